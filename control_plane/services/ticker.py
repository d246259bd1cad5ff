"""The tick: scheduler, dispatcher and reconciler in turn.

The embedded server runs :meth:`Ticker.tick` every second in its own thread; on
Lambda the EventBridge tick calls it once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from control_plane.services.automations import run_event_services
from control_plane.services.context import ServiceContext
from control_plane.services.dispatcher import Dispatcher, next_claimable_time
from control_plane.services.reconciler import Reconciler
from control_plane.services.scheduler import run_scheduler

log = logging.getLogger("pushpool.ticker")


class Ticker:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.dispatcher = Dispatcher(ctx)
        self.reconciler = Reconciler(ctx)
        self._last_schedule: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and wake_scheduler(): cuts the loop's wait short
        self._schedule_requested = False
        self._thread: threading.Thread | None = None

    def wake_scheduler(self) -> None:
        """A schedule changed: run a scheduler pass on the next loop, now rather than at its interval."""
        self._schedule_requested = True
        self._wake.set()

    def tick(self, *, force_schedule: bool = False) -> None:
        """One pass of every service; each is isolated so one failing does not stop the others."""
        mono = time.monotonic()
        if self._schedule_requested:
            self._schedule_requested, force_schedule = False, True
        due = self._last_schedule is None or mono - self._last_schedule >= self.ctx.settings.scheduler_interval_seconds
        for name, step in (
            ("scheduler", run_scheduler if (due or force_schedule) else None),
            ("dispatcher", lambda ctx: self.dispatcher.run_once()),
            ("reconciler", lambda ctx: self.reconciler.run_once()),
            ("automations", run_event_services),
        ):
            if step is None:
                continue
            try:
                step(self.ctx)
            except Exception:
                log.exception("%s step failed", name)
        if due or force_schedule:
            self._last_schedule = mono

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pushpool-ticker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self.ctx.settings.tick_interval_seconds
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick()
            if not self._schedule_requested:
                self._wake.wait(self._wait_seconds(max(0.0, interval - (time.monotonic() - started))))
            self._wake.clear()

    def _wait_seconds(self, until_next_tick: float) -> float:
        """Until the next tick, or sooner when a run becomes claimable before it (so it leaves on the dot)."""
        now = self.ctx.clock.now()
        try:
            wake_at = next_claimable_time(self.ctx, now, now + timedelta(seconds=until_next_tick))
        except Exception:
            log.exception("looking for the next due run failed")
            return until_next_tick
        return until_next_tick if wake_at is None else max(0.0, (wake_at - now).total_seconds())

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.dispatcher.close()
