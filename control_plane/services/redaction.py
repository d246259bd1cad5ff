"""Keeping resolved secrets out of what tenants and logs can read.

The dispatcher hands a pusher a job whose configuration holds decrypted block values (cloud
credentials). A cloud's error may echo part of that job back; before such a message becomes a
state message, an event, a ``submission_error`` or a log line, every secret value the job resolved
is replaced by the same mask API responses use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pushpool.control_plane.services.block_types import BLOCK_TYPES, MASK

#: Shorter values are not masked (they would mask ordinary words); no secret field is this short.
MIN_SECRET = 4


def secret_values(block_type: str, data: dict[str, Any]) -> set[str]:
    """The strings of ``data`` that are secret for its block type (nested values of a secret field too)."""
    secret_fields = {f.name for f in BLOCK_TYPES.get(block_type, ()) if f.secret}
    found: set[str] = set()
    for name, value in data.items():
        if name in secret_fields:
            found |= set(_strings(value))
    return found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def _forms(secret: str) -> set[str]:
    """A secret as it may appear in a message: as is, JSON-escaped, and line by line (keys in PEM)."""
    forms = {secret, json.dumps(secret)[1:-1]}
    forms |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= 16}
    return {f for f in forms if len(f) >= MIN_SECRET}


def redact(text: str | None, secrets: Iterable[str]) -> str | None:
    """``text`` with every secret masked (longest first, so a secret inside another is masked whole)."""
    if not text:
        return text
    forms = sorted({f for s in secrets for f in _forms(s)}, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text
