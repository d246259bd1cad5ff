"""Job templating: placeholder substitution, variable merging and validation.

A pool's base job template is ``{"job_configuration": {...}, "variables": <JSON schema>}``.
The configuration may hold ``{{ name }}`` placeholders and nothing else is
interpreted: no expressions, filters or code, so a user's template can never run
anything. Semantics (compatible with Prefect's):

* a string that is exactly one placeholder takes the value itself, keeping its type;
* a placeholder whose variable has no value (and no default) removes its key or
  list item;
* a placeholder inside a longer string is replaced by the value as text (JSON for
  lists and objects; empty when missing);
* ``{{ pushpool.blocks.NAME }}`` (or ``{{ pushpool.blocks.NAME.field }}``) is left for
  the dispatcher, which resolves it to the decrypted data of block NAME of the run's
  workspace (or one field of it), at dispatch time only.

Values are merged pool defaults < deployment job_variables < run job_variables,
with ``env`` merged key by key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.services.json_schema import schema_problem, validation_errors

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)\s*\}\}")
BLOCK_PREFIX = "pushpool.blocks."
MAX_DEPTH = 64


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def _lookup(values: dict[str, Any], name: str) -> Any:
    current: Any = values
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return MISSING
        current = current[part]
    return current


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def apply_values(template: Any, values: dict[str, Any], *, keep: Callable[[str], bool] = lambda n: False,
                 _depth: int = 0) -> Any:
    """Substitute placeholders in ``template``; placeholders for which ``keep`` is true stay as written."""
    if _depth > MAX_DEPTH:
        raise InvalidInput(f"job template is nested more than {MAX_DEPTH} levels deep")
    if isinstance(template, str):
        matches = list(PLACEHOLDER.finditer(template))
        if not matches:
            return template
        if len(matches) == 1 and matches[0].group(0) == template:
            name = matches[0].group(1)
            return template if keep(name) else _lookup(values, name)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if keep(name):
                return match.group(0)
            value = _lookup(values, name)
            return "" if value is MISSING else _as_text(value)

        return PLACEHOLDER.sub(substitute, template)
    if isinstance(template, dict):
        out = {}
        for key, item in template.items():
            rendered = apply_values(item, values, keep=keep, _depth=_depth + 1)
            if rendered is not MISSING:
                out[key] = rendered
        return out
    if isinstance(template, list):
        rendered_items = [apply_values(item, values, keep=keep, _depth=_depth + 1) for item in template]
        return [item for item in rendered_items if item is not MISSING]
    return template


def _is_block_ref(name: str) -> bool:
    return name.startswith(BLOCK_PREFIX)


def placeholders_in(template: Any, _depth: int = 0) -> set[str]:
    if _depth > MAX_DEPTH:
        raise InvalidInput(f"job template is nested more than {MAX_DEPTH} levels deep")
    if isinstance(template, str):
        return {m.group(1) for m in PLACEHOLDER.finditer(template)}
    if isinstance(template, dict):
        return set().union(*(placeholders_in(v, _depth + 1) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(placeholders_in(v, _depth + 1) for v in template)) if template else set()
    return set()


# --------------------------------------------------------------------------- templates


def validate_base_job_template(template: Any) -> dict[str, Any]:
    """Check a pool's base job template; returns it unchanged or raises InvalidInput naming the problem."""
    if not isinstance(template, dict):
        raise InvalidInput("base_job_template: must be an object with 'job_configuration' and 'variables'")
    unknown = set(template) - {"job_configuration", "variables"}
    if unknown:
        raise InvalidInput(f"base_job_template: unknown key(s) {', '.join(sorted(unknown))}")
    config, variables = template.get("job_configuration"), template.get("variables")
    if not isinstance(config, dict):
        raise InvalidInput("base_job_template.job_configuration: must be an object")
    if not isinstance(variables, dict) or variables.get("type", "object") != "object":
        raise InvalidInput("base_job_template.variables: must be a JSON schema of type 'object'")
    problem = schema_problem(variables)
    if problem is not None:
        raise InvalidInput(f"base_job_template.variables: not a valid JSON schema: {problem}")
    properties = variables.get("properties", {})
    for name in sorted(placeholders_in(config)):
        if not _is_block_ref(name) and name.split(".")[0] not in properties:
            raise InvalidInput(
                f"base_job_template.job_configuration: placeholder {{{{ {name} }}}} does not name a variable; "
                f"add {name.split('.')[0]!r} to 'variables.properties' or remove it"
            )
    return template


def variable_defaults(variables_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        name: spec["default"]
        for name, spec in variables_schema.get("properties", {}).items()
        if isinstance(spec, dict) and "default" in spec
    }


def merge_job_variables(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Later layers win; ``env`` dictionaries are merged key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key == "env" and isinstance(value, dict) and isinstance(merged.get("env"), dict):
                merged["env"] = {**merged["env"], **value}
            else:
                merged[key] = value
    return merged


def validate_job_variables(
    variables_schema: dict[str, Any], job_variables: dict[str, Any], *, field: str = "job_variables",
    require: bool = False,
) -> None:
    """Unknown or ill-typed variables raise InvalidInput naming them.

    With ``require``, variables the schema marks required must have a value too
    (used on the fully merged values of a run).
    """
    properties = variables_schema.get("properties", {})
    for name in job_variables:
        if name not in properties:
            known = ", ".join(sorted(properties)) or "none"
            raise InvalidInput(f"{field}.{name}: unknown job variable for this work pool (known: {known})",
                               errors=[{"loc": [field, name], "msg": "unknown job variable"}])
    schema = {"type": "object", "properties": properties}
    if require:
        schema["required"] = variables_schema.get("required", [])
    errors = validation_errors(schema, job_variables)
    if errors:
        first = errors[0]
        path = ".".join([field, *(str(p) for p in first.path)])
        raise InvalidInput(
            f"{path}: {first.message}",
            errors=[{"loc": [field, *e.path], "msg": e.message} for e in errors],
        )


def check_cloud_rules(pool_type: str, variables_schema: dict[str, Any], *layers: dict[str, Any] | None) -> None:
    """The pool type's own rules (pushers.base.check_job_variables) on the job variables ``layers`` set over the
    template's defaults; a value that is still a placeholder (a block reference) is left to the cloud."""
    from pushpool.pushers.base import check_job_variables

    explicit = merge_job_variables(*layers)
    check_job_variables(pool_type, merge_job_variables(variable_defaults(variables_schema), explicit), explicit)


def render_job_configuration(
    base_job_template: dict[str, Any],
    *layers: dict[str, Any] | None,
    run_layer: dict[str, Any] | None = None,
    resolve_block: Callable[[str], dict[str, Any]] | None = None,
    require: bool = True,
) -> dict[str, Any]:
    """The job configuration for a run: variables merged over defaults, substituted, blocks resolved.

    Block references are resolved in the template, the variables' defaults and ``layers`` (the pool's
    and the deployment's, written by people who may edit the workspace's blocks) — never in
    ``run_layer``, the run's own variables: a run's text stays text, so a caller allowed to start a run
    cannot read a block back through an error or a state message. ``require=False`` renders without
    insisting on required variables (a pool's defaults).
    """
    variables = base_job_template.get("variables", {})
    defaults = variable_defaults(variables)
    validate_job_variables(variables, merge_job_variables(defaults, *layers, run_layer), require=require)
    config = base_job_template.get("job_configuration", {})
    trusted = [defaults, *(layer or {} for layer in layers)]
    if resolve_block is None:
        return apply_values(config, merge_job_variables(*trusted, run_layer), keep=_is_block_ref)
    refs = placeholders_in([config, *trusted])
    names = {n[len(BLOCK_PREFIX):].split(".")[0] for n in refs if _is_block_ref(n)}
    blocks = {"pushpool": {"blocks": {name: resolve_block(name) for name in sorted(names)}}}
    missing = sorted(n for n in refs if _is_block_ref(n) and _lookup(blocks, n) is MISSING)
    if missing:
        raise InvalidInput(f"the job template references {missing[0]!r}, but that block has no such field")
    resolved = [apply_values(layer, blocks, keep=lambda n: not _is_block_ref(n)) for layer in trusted]
    values = merge_job_variables(*resolved, run_layer)
    # One pass: a value put in is never scanned again, so a run's "{{ pushpool.blocks.x }}" stays inert.
    return apply_values(config, {**values, **blocks}, keep=lambda n: False)
