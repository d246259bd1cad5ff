"""Cloud resource names made from pool names: the pool's name where the cloud's rule allows it, else a form of it
that does, with a digest so that two pools never meet under one name. Each cloud's module says its rules
(pushers/aws_names.py; the Azure and Google provisioners)."""

from __future__ import annotations

import hashlib
import re


def digest_of(pool: str) -> str:
    """Eight hex digits that tell one pool name from another."""
    return hashlib.sha256(pool.encode()).hexdigest()[:8]


def fitted(prefix: str, pool: str, suffix: str, *, limit: int, allowed: str, lower: bool = False) -> str:
    """``prefix + pool + suffix`` with the pool's part changed to ``allowed`` characters and shortened so the
    whole is at most ``limit`` long; a changed or shortened pool part ends in ``-<8 hex digits>`` of its name."""
    text = pool.lower() if lower else pool
    cleaned = re.sub(f"[^{allowed}]", "-", text)
    room = limit - len(prefix) - len(suffix)
    if cleaned == pool and len(cleaned) <= room:
        return prefix + cleaned + suffix
    digest = digest_of(pool)
    return prefix + cleaned[:max(1, room - len(digest) - 1)].rstrip("-._") + "-" + digest + suffix
