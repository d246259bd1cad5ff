"""Shipping a run's task-run records to the control plane in batches, off the flow's own threads.

``record()`` only puts the latest version of a record into a dict (newer versions of the same
task run replace older ones before they are sent), so a task costs a dictionary write. A
background thread sends what is pending once a second, or sooner when ``batch_size`` records
wait. Shipping never blocks or fails the flow: when the control plane cannot be reached the
records stay pending (up to ``max_pending``; beyond, new ones are dropped and counted) and go
with the next send; ``close()`` sends the rest, trying for at most ``close_timeout`` seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pushpool.control_plane.errors import PushpoolError, TooLarge

#: Records per request (the API takes at most 1,000).
BATCH_SIZE = 500


class TaskRunReporter:
    def __init__(self, send: Callable[[list[dict[str, Any]]], None], *, interval: float = 1.0,
                 batch_size: int = BATCH_SIZE, max_pending: int = 100_000, close_timeout: float = 30.0,
                 on_close: Callable[[], None] | None = None) -> None:
        self._send = send
        self._on_close = on_close
        self.interval, self.batch_size, self.max_pending = interval, batch_size, max_pending
        self.close_timeout = close_timeout
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._refused = False  # the control plane said the run has reported all it may
        self.dropped = 0
        self.sent = 0
        self.requests = 0
        self._thread = threading.Thread(target=self._loop, name="pushpool-task-reporter", daemon=True)
        self._thread.start()

    def record(self, task_run: dict[str, Any]) -> None:
        with self._lock:
            if task_run["id"] not in self._pending and (len(self._pending) >= self.max_pending or self._refused):
                self.dropped += 1
                return
            self._pending[task_run["id"]] = task_run
            full = len(self._pending) >= self.batch_size
        if full:
            self._wake.set()

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(self._pending)[: self.batch_size]
            return [self._pending.pop(i) for i in ids]

    def _give_back(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in batch:  # a newer version recorded meanwhile wins
                self._pending.setdefault(record["id"], record)

    def _flush(self, deadline: float | None = None) -> bool:
        """Send what is pending, batch by batch; ``False`` when a send failed or time ran out (the rest waits)."""
        while True:
            if (deadline is None and self._closing) or (deadline is not None and time.monotonic() > deadline):
                return False
            batch = self._take()
            if not batch:
                return True
            try:
                self.requests += 1
                self._send(batch)
                self.sent += len(batch)
            except TooLarge as exc:
                with self._lock:
                    self._refused = True
                    self.dropped += len(batch) + len(self._pending)
                    self._pending.clear()
                print(f"pushpool: task runs are no longer recorded: {exc}", file=sys.stderr)
                return True
            except PushpoolError as exc:
                self._give_back(batch)
                print(f"pushpool: reporting {len(batch)} task run(s) failed ({exc}); will retry", file=sys.stderr)
                return False

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.interval)
            self._wake.clear()
            if not self._closing:
                self._flush()

    def close(self) -> None:
        """Send what is left (called when the flow has finished, before its final state is reported)."""
        deadline = time.monotonic() + self.close_timeout
        self._closing = True
        self._wake.set()
        self._thread.join(self.close_timeout)  # it stops after the batch it may be sending
        while not self._flush(deadline) and time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self.dropped += len(self._pending)
            self._pending.clear()
        if self.dropped:
            print(f"pushpool: {self.dropped} task-run report(s) could not be recorded", file=sys.stderr)
        if self._on_close is not None:
            self._on_close()
