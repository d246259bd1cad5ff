"""What every pool type's default base job template shares: the block reference and the template's shape."""

from __future__ import annotations

import copy
from typing import Any

#: A job variable that names a credentials block: "{{ pushpool.blocks.NAME }}".
BLOCK_REF = {"type": "string", "pattern": r"^\{\{\s*pushpool\.blocks\.[A-Za-z0-9_-]+\s*\}\}$"}


def block_variable(description: str) -> dict[str, Any]:
    """A credentials variable: a block reference, or the block's data once rendered."""
    return {"anyOf": [BLOCK_REF, {"type": "object"}], "description": description}


def job_template(variables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A base job template with one placeholder per variable; a fresh copy each time (callers set defaults)."""
    return {
        "job_configuration": {name: f"{{{{ {name} }}}}" for name in variables},
        "variables": {"type": "object", "properties": copy.deepcopy(variables)},
    }
