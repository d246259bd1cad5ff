"""JSON Schema (Draft 2020-12) checks used by templating, parameters and deployments.

``jsonschema`` is imported on first use (it adds ~50 ms to an import, and a Lambda tick
rarely validates anything), and validators are cached per schema: a dispatch pass over a
thousand runs of one pool builds one validator, not a thousand.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def validation_errors(schema: dict[str, Any], instance: Any) -> list[Any]:
    """Every error of ``instance`` against ``schema``, ordered by path (``.path``, ``.message``, ``.validator``)."""
    validator = _validator(json.dumps(schema, sort_keys=True, default=str))
    return sorted(validator.iter_errors(instance), key=lambda e: list(e.path))


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON schema, or ``None`` when it is."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    return None
