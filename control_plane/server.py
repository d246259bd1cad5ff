"""The embedded server: SQLite in ``$PUSHPOOL_HOME`` (or the configured store), the API on uvicorn, the tick loop
in a thread. With a shared store (PostgreSQL) any number of these run as replicas: every one serves the API and
runs the tick; the store keeps their claims disjoint."""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn

from pushpool.control_plane.app import build_context, create_app
from pushpool.control_plane.bootstrap import bootstrap, check_shared_key
from pushpool.control_plane.home import prepare_home
from pushpool.control_plane.log_format import configure_logging
from pushpool.control_plane.services.ticker import Ticker
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage import open_store
from pushpool.pushers.base import PusherRegistry

log = logging.getLogger("pushpool.server")


def serve(settings: Settings, on_bootstrap: Callable[[str, str], None] | None = None,
          log_level: str = "info", pushers: PusherRegistry | None = None) -> None:
    """Run until interrupted. ``on_bootstrap(workspace, key)`` is called when a first key was created.

    ``pushers`` replaces the pusher registry (benchmarks use a recording pusher)."""
    configure_logging(log_level, settings.log_format)
    prepare_home(settings.home)
    store = open_store(settings)
    ctx = build_context(settings, store, pushers=pushers)
    if settings.store == "postgresql":
        check_shared_key(ctx)
    if settings.bootstrap:
        created = bootstrap(ctx)
        if created and on_bootstrap:
            on_bootstrap(*created)
    elif not store.list_workspaces():
        log.warning("the store has no workspace yet and PUSHPOOL_BOOTSTRAP is off: run `pushpool server "
                    "bootstrap` once (same store and encryption key) to create one and print its owner key")
    app = create_app(settings, store, ctx=ctx)
    ticker = Ticker(ctx)
    app.state.ticker = ticker  # POST /api/tick (with PUSHPOOL_TICK_TOKEN) runs a pass of it
    ctx.wake_scheduler = ticker.wake_scheduler
    ctx.events.start()  # events are written in batches by a background thread
    ticker.start()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)
    finally:
        ticker.stop()
        ctx.events.stop()
        store.close()
