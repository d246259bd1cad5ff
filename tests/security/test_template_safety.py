"""User-supplied templates and variables cannot execute code, read settings, reach another
workspace's blocks, or hang the dispatcher."""

from __future__ import annotations

import pytest

TEMPLATE = {
    "job_configuration": {"command": "{{ command }}", "env": "{{ env }}", "note": "{{ note }}",
                          "working_dir": "/tmp"},
    "variables": {"type": "object", "properties": {
        "command": {"type": "string"}, "env": {"type": "object"}, "note": {"type": "string"},
        "a": {"type": "string"}, "b": {"type": "string"}}},
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", [
    "{{ 7*7 }}", "{% for i in range(10**10) %}x{% endfor %}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ config }}", "{{ self._TemplateReference__context }}", "${{ env.HOME }}", "{{ lipsum.__globals__ }}",
])
def test_expressions_in_variables_stay_inert_text(api, dispatch, fake_pusher, value):
    api.pool(base_job_template=TEMPLATE)
    api.run(api.deployment(job_variables={"note": value, "env": {"X": value}})["id"])
    dispatch()
    [job] = fake_pusher.jobs
    assert job.configuration["note"] == value and job.env["X"] == value


@pytest.mark.timeout(30)
def test_values_are_substituted_once_so_nothing_expands_recursively(api, dispatch, fake_pusher):
    template = {"job_configuration": {"note": "{{ a }}"}, "variables": TEMPLATE["variables"]}
    api.pool(base_job_template=template)
    api.run(api.deployment(job_variables={"a": "{{ b }}{{ b }}{{ b }}", "b": "{{ a }}{{ a }}"})["id"])
    dispatch()
    assert fake_pusher.jobs[0].configuration["note"] == "{{ b }}{{ b }}{{ b }}"


@pytest.mark.timeout(30)
def test_huge_values_do_not_hang(api, dispatch, fake_pusher):
    api.pool(base_job_template=TEMPLATE)
    big = "x" * 150_000  # job variables may be up to 256 KB (schemas.MAX_OBJECT_BYTES)
    api.run(api.deployment(job_variables={"note": big, "env": {f"K{i}": "v" for i in range(5000)}})["id"])
    dispatch()
    assert len(fake_pusher.jobs[0].configuration["note"]) == 150_000


def test_templates_cannot_name_settings_or_internals(api):
    for placeholder in ("{{ pushpool.settings.encryption_key }}", "{{ settings }}", "{{ __builtins__ }}"):
        template = {"job_configuration": {"leak": placeholder}, "variables": {"type": "object", "properties": {}}}
        response = api.post(api.ws("/work_pools"), json={"name": "p", "type": "local:push",
                                                          "base_job_template": template})
        assert response.status_code == 422 and "does not name a variable" in response.json()["detail"]


def test_block_references_stay_inside_the_workspace(api, dispatch, fake_pusher):
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    other = api.as_key(api.key, workspace="other")
    other.ok("POST", other.ws("/blocks"), json={"name": "theirs", "type": "secret", "data": {"value": "TOP"}})
    template = {"job_configuration": {"creds": "{{ pushpool.blocks.theirs }}"},
                "variables": {"type": "object", "properties": {}}}
    api.pool(base_job_template=template)
    run = api.run(api.deployment()["id"])
    dispatch()
    assert fake_pusher.jobs == []
    state = api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))["state"]
    assert state["type"] == "CRASHED" and "block 'theirs', which does not exist" in state["message"]
    assert "TOP" not in state["message"]


def test_deeply_nested_variables_are_rejected_not_crashing(api, dispatch):
    api.pool(base_job_template=TEMPLATE)
    nested: dict = {}
    cursor = nested
    for _ in range(120):
        cursor["k"] = {}
        cursor = cursor["k"]
    dep = api.deployment(job_variables={"env": nested})
    run = api.run(dep["id"])
    dispatch()
    state = api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))["state"]
    assert state["type"] == "CRASHED" and "nested more than" in state["message"]
