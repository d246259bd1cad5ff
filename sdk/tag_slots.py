"""Slots of tag concurrency limits for a task run: taken before it runs, renewed while it runs, given back after.

Only inside a deployment's run (the runner's client, its run token). A tag without a limit costs
one request, and then none for half a minute; a task waiting for a slot shows as
``PENDING (AwaitingConcurrencySlot)``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds a slot is held without renewal; renewed every third of it.
LEASE_SECONDS = 60.0
#: How long "these tags have no limit" is believed before asking again.
UNLIMITED_FOR_SECONDS = 30.0

_unlimited: dict[str, float] = {}
_lock = threading.Lock()


class TagSlots:
    def __init__(self, client: Any, tags: list[str], holder: str, on_wait: Callable[[list[str]], None]) -> None:
        self.client, self.tags, self.holder, self.on_wait = client, sorted(set(tags)), holder, on_wait
        self.limited: list[str] = []
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _known_unlimited(self) -> bool:
        now = time.monotonic()
        with _lock:
            return all(_unlimited.get(tag, 0) > now for tag in self.tags)

    def _ask(self) -> dict[str, Any]:
        return self.client.request("POST", self.client.ws("/concurrency_limits/acquire"), json={
            "holder": self.holder, "tags": self.tags, "lease_seconds": LEASE_SECONDS})

    def acquire(self) -> None:
        """Wait until a slot of every limited tag is held (the limits may be full for a while)."""
        if not self.tags or self._known_unlimited():
            return
        while True:
            answer = self._ask()
            if answer["acquired"]:
                self.limited = answer["limited"]
                break
            self.on_wait(answer.get("full", []))
            time.sleep(answer.get("retry_after", 1.0))
        unlimited = set(self.tags) - set(self.limited)
        with _lock:
            for tag in unlimited:
                _unlimited[tag] = time.monotonic() + UNLIMITED_FOR_SECONDS
        if self.limited:
            self._renewer = threading.Thread(target=self._renew, name=f"pushpool-slots-{self.holder}", daemon=True)
            self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                self._ask()
            except Exception:  # the next renewal tries again; the lease outlives two misses
                continue

    def release(self) -> None:
        self._stop.set()
        if not self.limited:
            return
        with contextlib.suppress(Exception):  # if not, the lease ends on its own within a minute
            self.client.request("POST", self.client.ws("/concurrency_limits/release"),
                                json={"holder": self.holder, "tags": self.limited})
