"""The control plane's metrics over HTTP: every request measured by its route template, and ``GET /metrics`` for a
Prometheus scraper (the embedded server only).

``/metrics`` answers callers on the loopback interface, and others that bring the operator's token
(``PUSHPOOL_METRICS_TOKEN``, ``Authorization: Bearer …``); anyone else gets 404, as if it did not exist. A
tenant's API key opens nothing here: the figures are the whole instance's.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pushpool.control_plane.metrics import PrometheusMetrics

router = APIRouter(include_in_schema=False)


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@router.get("/metrics")
def metrics_page(request: Request) -> Response:
    ctx = request.app.state.ctx
    metrics, token = ctx.metrics, ctx.settings.metrics_token
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    allowed = _loopback(request.client.host if request.client else None) or (
        bool(token) and hmac.compare_digest(given.encode(), token.encode()))
    if not isinstance(metrics, PrometheusMetrics) or not allowed:
        return Response('{"detail":"Not Found"}', status_code=404, media_type="application/json")
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


class MeasureRequests:
    """An ASGI middleware: each HTTP request's duration by route template, method and status."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.metrics.enabled:
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            self.metrics.api_request(getattr(route, "path", None) or "unmatched", scope["method"], status,
                                     time.perf_counter() - started)
