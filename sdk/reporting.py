"""Shipping what a run produces — task-run records and log lines — to the control plane, off the flow's threads.

Recording only appends to memory under a lock, so a task or a print costs next to nothing. A
background thread sends what is pending once per ``interval``, or sooner when a batch is full.
Shipping never blocks or fails the flow: while the control plane cannot be reached, what is
pending stays (up to a bound; beyond, new items are dropped and counted) and goes with the
next send. When the control plane says the run has sent all it may (413 for task runs,
``truncated`` for logs), the shipper stops. ``close()`` sends the rest, trying for at most
``close_timeout`` seconds, and says on stderr how much could not be sent.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pushpool.control_plane.errors import PushpoolError, TooLarge

#: Task runs per request (the API takes at most 1,000).
BATCH_SIZE = 500
#: Log lines per request (the API takes at most 5,000) and the bytes of text one request carries.
LOG_BATCH_LINES = 5000
LOG_BATCH_BYTES = 256 * 1024


class Shipper:
    """The thread, the schedule and the failure handling; subclasses keep the pending items."""

    what = "item"

    def __init__(self, *, interval: float, close_timeout: float, on_close: Callable[[], None] | None) -> None:
        self.interval, self.close_timeout, self._on_close = interval, close_timeout, on_close
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._refused = False  # the control plane said the run has sent all it may
        self.dropped = 0
        self.sent = 0
        self.requests = 0
        self._thread = threading.Thread(target=self._loop, name=f"pushpool-{self.what}-shipper", daemon=True)
        self._thread.start()

    # subclasses ----------------------------------------------------------
    def _take(self) -> Any:
        """The next batch to send, or ``None``."""
        raise NotImplementedError

    def _give_back(self, batch: Any) -> None:
        raise NotImplementedError

    def _send(self, batch: Any) -> bool:
        """Send one batch; ``False`` when the control plane will take no more."""
        raise NotImplementedError

    def _count(self, batch: Any) -> int:
        raise NotImplementedError

    def _drop_pending(self) -> int:
        raise NotImplementedError

    # the schedule ---------------------------------------------------------
    def _flush(self, deadline: float | None = None) -> bool:
        """Send what is pending, batch by batch; ``False`` when a send failed or time ran out (the rest waits)."""
        while True:
            if (deadline is None and self._closing) or (deadline is not None and time.monotonic() > deadline):
                return False
            batch = self._take()
            if batch is None:
                return True
            try:
                self.requests += 1
                more = self._send(batch)
                self.sent += self._count(batch)
            except TooLarge as exc:
                more = False
                self.dropped += self._count(batch)
                print(f"pushpool: {self.what}s are no longer recorded: {exc}", file=sys.stderr)
            except PushpoolError as exc:
                self._give_back(batch)
                print(f"pushpool: sending {self._count(batch)} {self.what}(s) failed ({exc}); will retry",
                      file=sys.stderr)
                return False
            if not more:
                with self._lock:
                    self._refused = True
                    self.dropped += self._drop_pending()
                return True

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
            self.dropped += self._drop_pending()
        if self.dropped:
            print(f"pushpool: {self.dropped} {self.what}(s) could not be sent to the control plane", file=sys.stderr)
        if self._on_close is not None:
            self._on_close()


class TaskRunReporter(Shipper):
    """Task-run records, the newest version of each (versions recorded before a send replace older ones)."""

    what = "task-run report"

    def __init__(self, send: Callable[[list[dict[str, Any]]], None], *, interval: float = 1.0,
                 batch_size: int = BATCH_SIZE, max_pending: int = 100_000, close_timeout: float = 30.0,
                 on_close: Callable[[], None] | None = None) -> None:
        self._post, self.batch_size, self.max_pending = send, batch_size, max_pending
        self._pending: dict[str, dict[str, Any]] = {}
        super().__init__(interval=interval, close_timeout=close_timeout, on_close=on_close)

    def record(self, task_run: dict[str, Any]) -> None:
        with self._lock:
            if task_run["id"] not in self._pending and (len(self._pending) >= self.max_pending or self._refused):
                self.dropped += 1
                return
            self._pending[task_run["id"]] = task_run
            full = len(self._pending) >= self.batch_size
        if full:
            self._wake.set()

    def _take(self) -> list[dict[str, Any]] | None:
        with self._lock:
            ids = list(self._pending)[: self.batch_size]
            return [self._pending.pop(i) for i in ids] or None

    def _give_back(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in batch:  # a newer version recorded meanwhile wins
                self._pending.setdefault(record["id"], record)

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        self._post(batch)
        return True

    def _count(self, batch: list[dict[str, Any]]) -> int:
        return len(batch)

    def _drop_pending(self) -> int:
        count = len(self._pending)
        self._pending.clear()
        return count


class LogShipper(Shipper):
    """Log lines in order, in numbered batches (a batch sent again after a lost answer keeps its number)."""

    what = "log line"

    def __init__(self, send: Callable[[int, list[dict[str, Any]]], dict[str, Any]], *, interval: float = 0.5,
                 max_pending: int = 200_000, close_timeout: float = 30.0,
                 on_close: Callable[[], None] | None = None) -> None:
        self._post, self.max_pending = send, max_pending
        self._lines: deque[dict[str, Any]] = deque()
        self._retry: deque[tuple[int, list[dict[str, Any]]]] = deque()
        self._next_seq = 0
        self._pending_bytes = 0
        super().__init__(interval=interval, close_timeout=close_timeout, on_close=on_close)

    def emit(self, line: dict[str, Any]) -> None:
        with self._lock:
            if self._refused or len(self._lines) >= self.max_pending:
                self.dropped += 1
                return
            self._lines.append(line)
            self._pending_bytes += len(line["message"])
            full = len(self._lines) >= LOG_BATCH_LINES or self._pending_bytes >= LOG_BATCH_BYTES
        if full:
            self._wake.set()

    def _take(self) -> tuple[int, list[dict[str, Any]]] | None:
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            batch: list[dict[str, Any]] = []
            size = 0
            while self._lines and len(batch) < LOG_BATCH_LINES and (not batch or size < LOG_BATCH_BYTES):
                line = self._lines.popleft()
                size += len(line["message"])
                batch.append(line)
            self._pending_bytes -= size
            if not batch:
                return None
            self._next_seq += 1
            return self._next_seq - 1, batch

    def _give_back(self, batch: tuple[int, list[dict[str, Any]]]) -> None:
        with self._lock:
            self._retry.appendleft(batch)

    def _send(self, batch: tuple[int, list[dict[str, Any]]]) -> bool:
        answer = self._post(*batch)
        return not (answer or {}).get("truncated")

    def _count(self, batch: tuple[int, list[dict[str, Any]]]) -> int:
        return len(batch[1])

    def _drop_pending(self) -> int:
        count = len(self._lines) + sum(len(lines) for _, lines in self._retry)
        self._lines.clear()
        self._retry.clear()
        self._pending_bytes = 0
        return count
