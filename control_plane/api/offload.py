"""Run a short route on the event loop when it will not wait, in the thread pool when it might.

A ``def`` route costs a hop to a worker thread and back (about a third of a millisecond on two
cores, a quarter of a small request). The busiest routes (creating a run, a runner's state
report, reading a run) do a few reads and at most one short write, so with SQLite they run on
the event loop under ``store.without_waiting()``: if their write would wait for another writer,
it raises before writing anything and the same work runs again in the thread pool, where waiting
is fine. A store without that mode (DynamoDB: network calls) always uses the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.storage.base import WouldWait

T = TypeVar("T")


async def on_loop_unless_busy(ctx: ServiceContext, work: Callable[..., T], *args: Any) -> T:
    without_waiting = getattr(ctx.store, "without_waiting", None)
    if without_waiting is not None:
        try:
            with without_waiting():
                return work(*args)
        except WouldWait:
            pass
    return await run_in_threadpool(work, *args)
