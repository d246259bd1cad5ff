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
from typing import Any, TextIO

from pushpool.control_plane.errors import InvalidInput, PushpoolError, TooLarge
from pushpool.control_plane.models import utf8_size

#: Task runs per request (the API takes at most 1,000).
BATCH_SIZE = 500
#: Items (records, pieces of captured text) per request and the UTF-8 bytes of text one request carries (the
#: API's limits).
LOG_BATCH_ITEMS = 5000
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
        #: Where the shipper's own messages go (the runner points it past the captured stderr).
        self.diagnostics: TextIO = sys.stderr
        self._thread = threading.Thread(target=self._loop, name=f"pushpool-{self.what}-shipper", daemon=True)
        self._thread.start()

    # subclasses ----------------------------------------------------------
    def _take(self, full_only: bool = False) -> Any:
        """The next batch to send (``full_only``: only a full one), or ``None``."""
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
    def _flush(self, deadline: float | None = None, full_only: bool = False) -> bool:
        """Send what is pending, batch by batch (``full_only``: the full batches; the rest waits for the next
        round); ``False`` when a send failed or time ran out (the rest waits)."""
        while True:
            if (deadline is None and self._closing) or (deadline is not None and time.monotonic() > deadline):
                return False
            batch = self._take(full_only)
            if batch is None:
                return True
            try:
                self.requests += 1
                more = self._send(batch)
                self.sent += self._count(batch)
            except TooLarge as exc:
                more = False
                self.dropped += self._count(batch)
                print(f"pushpool: {self.what}s are no longer recorded: {exc}", file=self.diagnostics)
            except InvalidInput as exc:  # sending it again would not help: this batch is lost, the next may go
                more = True
                self.dropped += self._count(batch)
                print(f"pushpool: {self._count(batch)} {self.what}(s) refused by the control plane: {exc}",
                      file=self.diagnostics)
            except PushpoolError as exc:
                self._give_back(batch)
                print(f"pushpool: sending {self._count(batch)} {self.what}(s) failed ({exc}); will retry",
                      file=self.diagnostics)
                return False
            if not more:
                with self._lock:
                    self._refused = True
                    self.dropped += self._drop_pending()
                return True

    def _loop(self) -> None:
        while not self._closing:
            woken_early = self._wake.wait(self.interval)  # by a full batch: send the full ones now
            self._wake.clear()
            if not self._closing:
                self._flush(full_only=woken_early)

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
            print(f"pushpool: {self.dropped} {self.what}(s) could not be sent to the control plane",
                  file=self.diagnostics)
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

    def _take(self, full_only: bool = False) -> list[dict[str, Any]] | None:
        with self._lock:
            if full_only and len(self._pending) < self.batch_size:
                return None
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
    """Log lines in order, in numbered batches (a batch sent again after a lost answer keeps its number).

    Two kinds of item: a record of the run logger (a dict, one line) and captured text (many lines
    sharing a stream and a time, ``{"stream", "timestamp", "text"}``, lines joined by newlines) —
    the captured output costs no object per line on the flow's side, and the API splits it.
    """

    what = "log line"

    def __init__(self, send: Callable[[int, list[dict[str, Any]]], dict[str, Any]], *, interval: float = 0.5,
                 max_pending: int = 200_000, close_timeout: float = 30.0,
                 on_close: Callable[[], None] | None = None) -> None:
        self._post, self.max_pending = send, max_pending
        self._items: deque[dict[str, Any]] = deque()
        self._retry: deque[tuple[int, list[dict[str, Any]]]] = deque()
        self._next_seq = 0
        self._pending_lines = 0
        self._pending_bytes = 0
        super().__init__(interval=interval, close_timeout=close_timeout, on_close=on_close)

    def emit(self, line: dict[str, Any]) -> None:
        """One record of the run logger."""
        self._add(line, 1, utf8_size(line["message"]))

    def emit_text(self, stream: str, text: str, timestamp: float) -> None:
        """Captured lines of ``stream``, joined by newlines."""
        self._add({"stream": stream, "timestamp": timestamp, "text": text}, text.count("\n") + 1, utf8_size(text))

    def _add(self, item: dict[str, Any], lines: int, size: int) -> None:
        with self._lock:
            if self._refused or self._pending_lines + lines > self.max_pending:
                self.dropped += lines
                return
            self._items.append(item)
            self._pending_lines += lines
            self._pending_bytes += size
            full = len(self._items) >= LOG_BATCH_ITEMS or self._pending_bytes >= LOG_BATCH_BYTES
        if full:
            self._wake.set()

    def _take(self, full_only: bool = False) -> tuple[int, list[dict[str, Any]]] | None:
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            if full_only and len(self._items) < LOG_BATCH_ITEMS and self._pending_bytes < LOG_BATCH_BYTES:
                return None
            batch: list[dict[str, Any]] = []
            texts: list[str] = []  # the pieces of the batch's last item while it is captured text (joined below)
            lines = size_taken = 0
            while self._items and len(batch) < LOG_BATCH_ITEMS and size_taken < LOG_BATCH_BYTES:
                item = self._items.popleft()
                if "text" in item:
                    room = LOG_BATCH_BYTES - size_taken  # in characters: one byte each in ASCII, else up to 4
                    head, rest = split_text(item["text"], room if item["text"].isascii() else room // 4)
                    mid_line = rest is not None and len(head) + len(rest) == len(item["text"])
                    if mid_line and batch:  # a line does not fit what is left: it opens the next batch
                        self._items.appendleft(item)
                        break
                    if rest is not None:  # the rest waits for the next batch, first in line
                        self._items.appendleft({**item, "text": rest})
                    # a line longer than a whole batch goes in parts; its last part is counted with the rest
                    taken, size = head.count("\n") + (0 if mid_line else 1), utf8_size(head)
                    if texts and batch[-1]["stream"] == item["stream"]:  # one text of consecutive captures
                        texts.append(head)
                        size += 1  # the newline between them
                    else:
                        self._join(batch, texts)
                        batch.append(item)
                        texts = [head]
                else:
                    taken, size = 1, utf8_size(item["message"])
                    if batch and size_taken + size > LOG_BATCH_BYTES:  # the record opens the next batch
                        self._items.appendleft(item)
                        break
                    self._join(batch, texts)
                    texts = []
                    batch.append(item)
                lines += taken
                size_taken += size
            self._join(batch, texts)
            self._pending_lines -= lines
            self._pending_bytes -= size_taken
            if not batch:
                return None
            self._next_seq += 1
            return self._next_seq - 1, batch

    @staticmethod
    def _join(batch: list[dict[str, Any]], texts: list[str]) -> None:
        if texts:
            batch[-1] = {**batch[-1], "text": "\n".join(texts)}

    def _give_back(self, batch: tuple[int, list[dict[str, Any]]]) -> None:
        with self._lock:
            self._retry.appendleft(batch)

    def _send(self, batch: tuple[int, list[dict[str, Any]]]) -> bool:
        answer = self._post(*batch)
        return not (answer or {}).get("truncated")

    def _count(self, batch: tuple[int, list[dict[str, Any]]]) -> int:
        return sum(item["text"].count("\n") + 1 if "text" in item else 1 for item in batch[1])

    def _drop_pending(self) -> int:
        count = self._pending_lines + sum(self._count(batch) for batch in self._retry)
        self._items.clear()
        self._retry.clear()
        self._pending_lines = self._pending_bytes = 0
        return count


def split_text(text: str, max_chars: int) -> tuple[str, str | None]:
    """``text`` (lines joined by newlines) cut so the head has at most ``max_chars`` characters, at a line's end
    where one is in reach; ``(text, None)`` when it fits whole."""
    max_chars = max(1, max_chars)
    if len(text) <= max_chars:
        return text, None
    newline = text.rfind("\n", 0, max_chars + 1)
    if newline < 0:  # one line longer than the room: its first part (the API keeps a long line in pieces)
        return text[:max_chars], text[max_chars:]
    return text[:newline], text[newline + 1:]


def log_sender(client: Any, run_id: str) -> Callable[[int, list[dict[str, Any]]], dict[str, Any]]:
    """How a :class:`LogShipper` sends a run's batches with ``client`` (a :class:`pushpool.client.PushpoolClient`):
    a batch of captured text only as a ``text/plain`` body (no JSON to encode: the runner's common case), any
    other batch as JSON."""
    path = client.ws(f"/flow_runs/{run_id}/logs")
    headers = {"Content-Type": "text/plain; charset=utf-8"}

    def send(seq: int, batch: list[dict[str, Any]]) -> dict[str, Any]:
        if len(batch) == 1 and "text" in batch[0]:
            item = batch[0]
            return client.request("POST", f"{path}/text", headers=headers,
                                  params={"seq": seq, "stream": item["stream"], "timestamp": item["timestamp"]},
                                  content=item["text"].encode("utf-8", "replace"))
        return client.request("POST", path, json={"seq": seq, "lines": batch})

    return send
