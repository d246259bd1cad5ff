"""The tick: scheduler, dispatcher and reconciler.

On Lambda the EventBridge tick calls :meth:`Ticker.tick` once a minute (every service in turn,
the scheduler pass bounded by ``scheduler_pass_budget_seconds``). The embedded server runs two
threads instead: one loops dispatcher, reconciler and automations every second (sooner when a run
becomes due), the other runs scheduler passes. A tenant's schedule that is slow to evaluate can
therefore never delay the dispatch or reconciliation of anyone's runs.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from pushpool.control_plane.metrics import measured
from pushpool.control_plane.services.automations import run_event_services
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.dispatcher import Dispatcher, next_claimable_time
from pushpool.control_plane.services.reconciler import Reconciler
from pushpool.control_plane.services.scheduler import run_scheduler

log = logging.getLogger("pushpool.ticker")


class Ticker:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.dispatcher = Dispatcher(ctx)
        self.reconciler = Reconciler(ctx)
        self._last_schedule: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts the dispatch loop's wait short (stop, new runs scheduled)
        self._wake_scheduler = threading.Event()  # cuts the scheduler loop's wait short
        self._schedule_requested = False
        self._threads: list[threading.Thread] = []
        self._dispatching = threading.Lock()
        self._outside_tick = threading.Lock()

    def wake_scheduler(self) -> None:
        """A schedule changed: run a scheduler pass now rather than at its interval."""
        self._schedule_requested = True
        self._wake_scheduler.set()

    def tick(self, *, force_schedule: bool = False) -> dict[str, int]:
        """One pass of every service, the scheduler first when due; each is isolated so one failing does
        not stop the others. Returns how many runs each scheduled, dispatched, reconciled (and events the
        automations took), and ``errors``."""
        if self._schedule_requested:
            self._schedule_requested, force_schedule = False, True
        scheduled = self._schedule_pass() if force_schedule or self._scheduler_due() else 0
        return {"scheduled": scheduled, **self._dispatch_pass()}

    def tick_if_idle(self) -> dict[str, int] | None:
        """A pass of every service (the scheduler's too) unless one is running in this process: ``None`` then.
        What an outside tick (``POST /api/tick`` from a cron service) calls."""
        if not self._outside_tick.acquire(blocking=False):
            return None
        try:
            return self.tick(force_schedule=True)
        finally:
            self._outside_tick.release()

    def _scheduler_due(self) -> bool:
        interval = self.ctx.settings.scheduler_interval_seconds
        return self._last_schedule is None or time.monotonic() - self._last_schedule >= interval

    def _schedule_pass(self) -> int:
        self._last_schedule = time.monotonic()
        try:
            with measured(self.ctx.metrics, "scheduler"):
                return run_scheduler(self.ctx, stop=self._stop.is_set)
        except Exception:
            log.exception("scheduler step failed")
            return 0

    def _dispatch_pass(self) -> dict[str, int]:
        counts = {"dispatched": 0, "reconciled": 0, "automations": 0, "errors": 0}
        with self._dispatching:  # the loop's pass and an outside tick's take turns
            for name, count, step in (
                ("dispatcher", "dispatched", lambda ctx: len(self.dispatcher.run_once())),
                ("reconciler", "reconciled", lambda ctx: self.reconciler.run_once()),
                ("automations", "automations", run_event_services),
            ):
                try:
                    with measured(self.ctx.metrics, name):
                        counts[count] += step(self.ctx) or 0
                except Exception:
                    log.exception("%s step failed", name)
                    counts["errors"] += 1
        return counts

    def start(self) -> None:
        for name, target in (("pushpool-ticker", self._dispatch_loop), ("pushpool-scheduler", self._schedule_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            self._schedule_requested = False
            if self._schedule_pass():
                self._wake.set()  # new runs may be due now: the dispatch loop looks at once
            interval = self.ctx.settings.scheduler_interval_seconds
            if not self._schedule_requested:
                self._wake_scheduler.wait(interval)
            self._wake_scheduler.clear()

    def _dispatch_loop(self) -> None:
        interval = self.ctx.settings.tick_interval_seconds
        while not self._stop.is_set():
            started = time.monotonic()
            self._wake.clear()
            self._dispatch_pass()
            self._wake.wait(self._wait_seconds(max(0.0, interval - (time.monotonic() - started))))

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
        self._wake_scheduler.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.dispatcher.close()
