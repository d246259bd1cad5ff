"""Which pusher serves a pool: bound to the pool's default configuration (e.g. its credentials).

Submission uses each run's own rendered job; status, cancel, cleanup and logs use
the pool's defaults, rendered here with block references resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from control_plane.errors import InvalidInput, PushpoolError
from control_plane.models import WorkPool
from control_plane.services.context import ServiceContext
from control_plane.services.templating import render_job_configuration
from pushers.base import Pusher

log = logging.getLogger("pushpool.pushers")


def block_resolver(ctx: ServiceContext, workspace_id: str) -> Callable[[str], dict[str, Any]]:
    """Resolves ``{{ pushpool.blocks.NAME }}`` within one workspace, to decrypted data."""
    def resolve(name: str) -> dict[str, Any]:
        block = ctx.store.get_block(workspace_id, name)
        if block is None:
            raise InvalidInput(f"the job template references block {name!r}, which does not exist")
        return ctx.cipher.decrypt(block.ciphertext)
    return resolve


def pool_configuration(ctx: ServiceContext, pool: WorkPool) -> dict[str, Any]:
    try:
        return render_job_configuration(pool.base_job_template, resolve_block=block_resolver(ctx, pool.workspace_id),
                                        require=False)
    except PushpoolError as exc:
        log.warning("work pool %s: its default configuration does not render (%s)", pool.name, exc)
        return {}


def pusher_for(ctx: ServiceContext, pool: WorkPool) -> Pusher:
    return ctx.pushers.get(pool.type, pool_configuration(ctx, pool))
