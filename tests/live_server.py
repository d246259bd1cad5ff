"""A real embedded server on 127.0.0.1 in this process: uvicorn in a thread, the tick loop, the real
local pusher. The ``live`` fixture (registered in tests/conftest.py) starts one per test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from pushpool.client import PushpoolClient
from pushpool.control_plane.app import build_context, create_app
from pushpool.control_plane.bootstrap import bootstrap
from pushpool.control_plane.services.ticker import Ticker
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.sqlite import SqliteStore
from tests.fakes.net import free_port


class LiveServer:
    def __init__(self, home: Path, **settings: Any) -> None:
        self.settings = Settings(**{"home": home, "port": free_port(), "tick_interval_seconds": 0.2,
                                    "scheduler_interval_seconds": 1, **settings})
        self.store = SqliteStore(self.settings.sqlite_path)
        self.ctx = build_context(self.settings, self.store)
        self.workspace, self.key = bootstrap(self.ctx)
        self.app = create_app(self.settings, self.store, ctx=self.ctx)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.settings.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.ticker = Ticker(self.ctx)
        self.ctx.wake_scheduler = self.ticker.wake_scheduler  # as control_plane.server does

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        self.ctx.events.start()  # as control_plane.server does: events written in batches by a thread
        self.ticker.start()

    def stop(self) -> None:
        self.ticker.stop()
        self.ctx.events.stop()
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.store.close()

    def client(self) -> PushpoolClient:
        return PushpoolClient(self.settings.api_url, self.key, self.workspace)


def wait_for_state(client: PushpoolClient, run_id: str, states: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    run = client.read_flow_run(run_id)
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run["state"]["type"] in states:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} stuck in {run['state']} (wanted {states})")


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.05)
