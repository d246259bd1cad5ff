"""Placeholder semantics, merge order and validation of job templates and variables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.services.templating import (
    MISSING,
    apply_values,
    merge_job_variables,
    render_job_configuration,
    validate_base_job_template,
    validate_job_variables,
)

TEMPLATE = {
    "job_configuration": {
        "image": "{{ image }}",
        "cpu": "{{ cpu }}",
        "name": "run-{{ name }}-{{ cpu }}",
        "env": "{{ env }}",
        "command": ["python", "{{ script }}", "{{ missing }}"],
        "optional": "{{ missing }}",
        "nested": {"labels": "{{ labels }}", "region": "{{ cfg.region }}"},
    },
    "variables": {
        "type": "object",
        "properties": {
            "image": {"type": "string"},
            "cpu": {"type": "integer", "default": 256},
            "name": {"type": "string"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "script": {"type": "string", "default": "main.py"},
            "missing": {"type": "string"},
            "labels": {"type": "object"},
            "cfg": {"type": "object"},
        },
        "required": ["image"],
    },
}


def test_exact_placeholder_keeps_type_and_missing_drops_key():
    out = render_job_configuration(TEMPLATE, {"image": "img", "labels": {"a": "b"}, "cfg": {"region": "eu"}})
    assert out["cpu"] == 256 and isinstance(out["cpu"], int)
    assert "optional" not in out
    assert out["command"] == ["python", "main.py"]
    assert out["nested"] == {"labels": {"a": "b"}, "region": "eu"}


def test_embedded_placeholders_are_stringified_and_missing_ones_empty():
    assert apply_values("run-{{ name }}-{{ cpu }}", {"cpu": 2}) == "run--2"
    assert apply_values("x={{ obj }}", {"obj": {"a": 1}}) == 'x={"a": 1}'
    assert apply_values("{{ gone }}", {}) is MISSING


def test_merge_order_and_env_merged_per_key():
    merged = merge_job_variables({"cpu": 1, "env": {"A": "pool", "B": "pool"}},
                                 {"cpu": 2, "env": {"B": "dep"}}, {"env": {"C": "run"}})
    assert merged == {"cpu": 2, "env": {"A": "pool", "B": "dep", "C": "run"}}
    out = render_job_configuration(TEMPLATE, {"image": "a", "env": {"X": "1"}}, {"image": "b", "env": {"Y": "2"}})
    assert out["image"] == "b" and out["env"] == {"X": "1", "Y": "2"}


def test_unknown_variable_is_named():
    with pytest.raises(InvalidInput, match=r"job_variables\.cpus: unknown job variable"):
        validate_job_variables(TEMPLATE["variables"], {"cpus": 2})


def test_ill_typed_variable_is_named_with_its_path():
    with pytest.raises(InvalidInput, match=r"job_variables\.cpu: 'lots' is not of type 'integer'"):
        validate_job_variables(TEMPLATE["variables"], {"cpu": "lots"})
    with pytest.raises(InvalidInput, match=r"job_variables\.env\.X: 1 is not of type 'string'"):
        validate_job_variables(TEMPLATE["variables"], {"env": {"X": 1}})


def test_required_variable_missing_at_render_time():
    with pytest.raises(InvalidInput, match="'image' is a required property"):
        render_job_configuration(TEMPLATE, {})


def test_blocks_resolved_only_through_the_resolver():
    template = {"job_configuration": {"creds": "{{ pushpool.blocks.aws }}", "region": "{{ region }}"},
                "variables": {"type": "object", "properties": {"region": {"type": "string", "default": "eu"}}}}
    validate_base_job_template(template)
    seen = []
    out = render_job_configuration(template, resolve_block=lambda name: seen.append(name) or {"key": "k"})
    assert out == {"creds": {"key": "k"}, "region": "eu"} and seen == ["aws"]


@pytest.mark.parametrize("template, message", [
    ([], "must be an object"),
    ({"job_configuration": {}, "variables": {}, "extra": 1}, "unknown key"),
    ({"job_configuration": "x", "variables": {}}, "job_configuration: must be an object"),
    ({"job_configuration": {}, "variables": {"type": "array"}}, "variables: must be a JSON schema"),
    ({"job_configuration": {}, "variables": {"type": "object", "properties": {"a": {"type": "nonsense"}}}},
     "not a valid JSON schema"),
    ({"job_configuration": {"x": "{{ nope }}"}, "variables": {"type": "object", "properties": {}}},
     r"placeholder \{\{ nope \}\} does not name a variable"),
])
def test_malformed_templates_are_rejected(template, message):
    with pytest.raises(InvalidInput, match=message):
        validate_base_job_template(template)


def test_expressions_and_jinja_are_inert_text():
    values = {"x": "v"}
    for text in ["{{ x.__class__.__mro__ }}", "{{ 7*7 }}", "{% for i in range(10**9) %}{% endfor %}",
                 "{{ ''.__class__ }}", "{{ x | upper }}"]:
        assert apply_values(text, values) in (text, MISSING)


def test_deep_nesting_is_an_error_not_a_crash():
    deep: dict = {}
    cursor = deep
    for _ in range(200):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(InvalidInput, match="nested more than"):
        apply_values(deep, {})


@given(st.text(max_size=60), st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True),
                                             st.one_of(st.text(max_size=10), st.integers()), max_size=4))
def test_substitution_never_raises_and_never_loses_plain_text(text, values):
    out = apply_values(text, values)
    if "{{" not in text:
        assert out == text


def test_a_block_field_can_be_referenced():
    template = {"job_configuration": {"env": "{{ env }}", "key": "{{ pushpool.blocks.aws.aws_access_key_id }}"},
                "variables": {"type": "object", "properties": {"env": {"type": "object"}}}}
    data = {"aws_access_key_id": "AKIA", "aws_secret_access_key": "S"}
    out = render_job_configuration(template, {"env": {"SECRET": "{{ pushpool.blocks.aws.aws_secret_access_key }}"}},
                                   resolve_block=lambda name: data)
    assert out == {"env": {"SECRET": "S"}, "key": "AKIA"}
    with pytest.raises(InvalidInput, match="no such field"):
        render_job_configuration({"job_configuration": {"x": "{{ pushpool.blocks.aws.nope }}"},
                                  "variables": {"type": "object"}}, resolve_block=lambda name: data)
