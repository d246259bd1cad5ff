"""Which pusher serves a pool: bound to the pool's default configuration (e.g. its credentials).

Submission uses each run's own rendered job; status, cancel, cleanup and logs use
the pool's defaults, rendered here with block references resolved.
"""

from __future__ import annotations

import logging
from typing import Any

from pushpool.control_plane.errors import InvalidInput, PushpoolError
from pushpool.control_plane.models import WorkPool
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.redaction import redact, secret_values
from pushpool.control_plane.services.templating import render_job_configuration
from pushpool.pushers.base import Pusher

log = logging.getLogger("pushpool.pushers")


class BlockResolver:
    """Resolves ``{{ pushpool.blocks.NAME }}`` within one workspace to decrypted data, and remembers the
    secret values it handed out so messages about the job can be redacted (:func:`redact`)."""

    def __init__(self, ctx: ServiceContext, workspace_id: str) -> None:
        self.ctx, self.workspace_id = ctx, workspace_id
        self.secrets: set[str] = set()

    def __call__(self, name: str) -> dict[str, Any]:
        block = self.ctx.store.get_block(self.workspace_id, name)
        if block is None:
            raise InvalidInput(f"the job template references block {name!r}, which does not exist")
        data = self.ctx.cipher.decrypt(block.ciphertext)
        self.secrets |= secret_values(block.type, data)
        return data

    def redact(self, text: str) -> str:
        return redact(text, self.secrets) or ""


def block_resolver(ctx: ServiceContext, workspace_id: str) -> BlockResolver:
    return BlockResolver(ctx, workspace_id)


def pool_configuration(ctx: ServiceContext, pool: WorkPool) -> dict[str, Any]:
    try:
        return render_job_configuration(pool.base_job_template, resolve_block=block_resolver(ctx, pool.workspace_id),
                                        require=False)
    except PushpoolError as exc:
        log.warning("work pool %s: its default configuration does not render (%s)", pool.name, exc)
        return {}


def pusher_for(ctx: ServiceContext, pool: WorkPool) -> Pusher:
    return ctx.pushers.get(pool.type, pool_configuration(ctx, pool))
