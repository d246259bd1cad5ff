"""Request guards that run before any route: body size limits and a brake on failing callers.

Both are plain ASGI middlewares (no per-request objects beyond a counter), so they cost next to
nothing on the request path and work the same under uvicorn and behind Lambda's Function URL.

* :class:`BodyLimit` refuses a body larger than ``PUSHPOOL_MAX_BODY_BYTES`` (``/hooks/…``:
  ``PUSHPOOL_MAX_WEBHOOK_BODY_BYTES``) with a 413 — from its ``Content-Length`` before anything
  is read, or while it is read when the length is not given — so nothing larger is ever buffered
  and no webhook slug is looked up for it.
* :class:`FailureBrake` counts, per source address, the answers that say the caller is guessing:
  401 (a missing, wrong or expired key) and 404 on ``/hooks/…`` (an unknown webhook slug). Past
  ``PUSHPOOL_FAILED_REQUESTS_PER_MINUTE`` in the last minute, that address gets 429 with
  ``Retry-After`` until its count falls again. The count is kept per process (on Lambda, per
  container), for at most ``MAX_SOURCES`` addresses.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from typing import Any

WINDOW_SECONDS = 60.0
MAX_SOURCES = 10_000
HOOKS_PREFIX = "/hooks/"


def _too_large(detail: str) -> Exception:
    """Raised from ``receive``: an HTTPException, so FastAPI's body parsing lets it through (it turns
    any other error while reading into a 400) and its handler answers 413 with the message."""
    from starlette.exceptions import HTTPException

    return HTTPException(status_code=413, detail=detail)


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int, max_webhook_bytes: int) -> None:
        self.app, self.max_bytes, self.max_webhook_bytes = app, max_bytes, max_webhook_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(HOOKS_PREFIX):
            limit, setting = self.max_webhook_bytes, "PUSHPOOL_MAX_WEBHOOK_BODY_BYTES"
        else:
            limit, setting = self.max_bytes, "PUSHPOOL_MAX_BODY_BYTES"
        detail = f"request body: larger than the limit of {limit} bytes ({setting})"
        message = {"detail": detail}
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > limit
                except ValueError:
                    too_large = False
                if too_large:
                    await _send_json(send, 413, message)
                    return
        received = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise _too_large(detail)
            return event

        async def tracking_send(event: Any) -> None:
            nonlocal started
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        from starlette.exceptions import HTTPException

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:  # read outside a route's handlers (none today): answered here
            if exc.status_code != 413 or started:
                raise
            await _send_json(send, 413, message)


class FailureBrake:
    def __init__(self, app: Any, per_minute: int) -> None:
        self.app, self.per_minute = app, per_minute
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, source: str, now: float) -> deque[float] | None:
        failures = self._failures.get(source)
        while failures and failures[0] < now - WINDOW_SECONDS:
            failures.popleft()
        return failures

    def _record(self, source: str, now: float) -> None:
        with self._lock:
            failures = self._failures.setdefault(source, deque(maxlen=self.per_minute + 1))
            self._failures.move_to_end(source)
            failures.append(now)
            while len(self._failures) > MAX_SOURCES:
                self._failures.popitem(last=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.per_minute <= 0 or scope["path"] == "/api/health":
            await self.app(scope, receive, send)
            return
        source = (scope.get("client") or ("unknown",))[0]
        now = time.monotonic()
        with self._lock:
            failures = self._recent(source, now)
            if failures is not None and len(failures) >= self.per_minute:
                retry = max(1, int(failures[0] + WINDOW_SECONDS - now) + 1)
                blocked = True
            else:
                blocked = False
        if blocked:
            await _send_json(send, 429, {"detail": f"too many failed requests from this address; retry in {retry} s"},
                             [(b"retry-after", str(retry).encode())])
            return
        is_hook = scope["path"].startswith(HOOKS_PREFIX)

        async def watching_send(event: Any) -> None:
            if event["type"] == "http.response.start":
                status = event["status"]
                if status == 401 or (status == 404 and is_hook):
                    self._record(source, time.monotonic())
            await send(event)

        await self.app(scope, receive, watching_send)
