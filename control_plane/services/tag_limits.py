"""Tag concurrency limits: slots that task runs take across every run of a workspace.

A task run with tags asks for a slot of each tag that has a limit, all or none, under a lease
(``lease_seconds``); while it runs its runner renews the lease, and it gives the slots back when
it ends. A runner that dies stops renewing, so its slots free themselves when the lease ends.
Every change is a conditional write of the limits it touches (see ``Store.save_concurrency_limits``),
retried a few times when other runners took slots at the same moment.
"""

from __future__ import annotations

import random

from pushpool.control_plane.errors import Conflict
from pushpool.control_plane.models import ConcurrencyLimit
from pushpool.control_plane.services.context import ServiceContext

#: Conditional writes tried before the caller is told to come back shortly.
ATTEMPTS = 8
#: Seconds a caller waits before asking again for a full limit (up to twice this, spread at random).
RETRY_AFTER = 0.5


def _limits(ctx: ServiceContext, workspace_id: str, tags: list[str]) -> list[ConcurrencyLimit]:
    found = (ctx.store.get_concurrency_limit(workspace_id, tag) for tag in sorted(set(tags)))
    return [limit for limit in found if limit is not None]


def acquire(ctx: ServiceContext, workspace_id: str, tags: list[str], holder: str, lease_seconds: float) -> dict:
    """``{"acquired": True, "limited": [tags with a limit]}``, or ``acquired: False`` with the full tags and
    ``retry_after`` seconds. Asking again for slots already held renews their lease."""
    for _ in range(ATTEMPTS):
        limits = _limits(ctx, workspace_id, tags)
        if not limits:
            return {"acquired": True, "limited": []}
        now = ctx.clock.now()
        active = {limit.tag: limit.active(now.timestamp()) for limit in limits}
        full = [limit.tag for limit in limits if holder not in active[limit.tag]
                and len(active[limit.tag]) >= limit.limit]
        if full:  # a slot frees when its holder gives it back, usually long before its lease ends: ask soon
            return {"acquired": False, "limited": [limit.tag for limit in limits], "full": full,
                    "retry_after": round(RETRY_AFTER * (1 + random.random()), 2)}  # noqa: S311 - spreads callers
        until = now.timestamp() + lease_seconds
        changed = [limit.model_copy(update={"holders": {**active[limit.tag], holder: until}, "updated": now})
                   for limit in limits]
        if ctx.store.save_concurrency_limits(changed):
            return {"acquired": True, "limited": [limit.tag for limit in limits]}
    return {"acquired": False, "limited": [], "full": [], "retry_after": RETRY_AFTER}


def release(ctx: ServiceContext, workspace_id: str, tags: list[str], holder: str) -> list[str]:
    """Give back ``holder``'s slots of these tags; returns the tags it held."""
    for _ in range(ATTEMPTS):
        limits = [limit for limit in _limits(ctx, workspace_id, tags) if holder in limit.holders]
        if not limits:
            return []
        now = ctx.clock.now()
        changed = [limit.model_copy(update={"holders": {h: t for h, t in limit.active(now.timestamp()).items()
                                                        if h != holder}, "updated": now}) for limit in limits]
        if ctx.store.save_concurrency_limits(changed):
            return [limit.tag for limit in limits]
    raise Conflict("the slots changed too often to be released; try again")
