"""The FastAPI application: ``create_app(settings, store)``.

Importing this module must stay cheap and must not import any cloud SDK: the
Lambda handler imports it on every cold start (a test enforces this).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pushpool.control_plane import __doc__ as _doc
from pushpool.control_plane import metrics_http
from pushpool.control_plane.api import (
    automations,
    backfills,
    blocks,
    child_runs,
    concurrency_limits,
    deployments,
    events,
    flow_runs,
    identity,
    logs,
    members,
    task_runs,
    tick,
    variables,
    webhooks,
    work_pools,
)
from pushpool.control_plane.api.guards import BodyLimit, FailureBrake
from pushpool.control_plane.clock import Clock
from pushpool.control_plane.errors import PushpoolError, Unauthorized
from pushpool.control_plane.services.context import ServiceContext, build_context
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.base import Store
from pushpool.control_plane.web import automations as automation_pages
from pushpool.control_plane.web import catalog, overview, pages, pools, run_list
from pushpool.pushers.base import PusherRegistry

__all__ = ["VERSION", "build_context", "create_app"]

VERSION = "0.1.0"


def create_app(settings: Settings, store: Store, *, clock: Clock | None = None,
               pushers: PusherRegistry | None = None, ctx: ServiceContext | None = None) -> FastAPI:
    app = FastAPI(title="pushpool", version=VERSION, description=_doc or "")
    app.state.ctx = ctx or build_context(settings, store, clock, pushers)

    @app.exception_handler(PushpoolError)
    def pushpool_error(_: Request, exc: PushpoolError) -> JSONResponse:
        body: dict = {"detail": exc.message}
        headers = None
        if exc.errors:
            body["errors"] = exc.errors
        if isinstance(exc, Unauthorized):
            body["reason"] = exc.reason
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    @app.exception_handler(sqlite3.OperationalError)
    def database_error(_: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        text = str(exc)
        if "full" in text or "locked" in text or "disk I/O" in text:
            cause = "the disk of the server's database is full" if "full" in text else f"the database is busy ({text})"
            return JSONResponse({"detail": f"{cause}; nothing was changed, try again later"}, status_code=503,
                                headers={"Retry-After": "30"})
        raise exc

    @app.get("/api/health", tags=["health"])
    def health() -> dict:
        body: dict = {"status": "ok", "version": VERSION, "store": settings.store,
                      "public_api_url": settings.api_url}
        last_tick = app.state.ctx.store.get_meta("last_tick")  # recorded by the Lambda tick
        if last_tick:
            tick = json.loads(last_tick)
            body["last_tick"] = {"finished": tick.get("finished"), "errors": len(tick.get("errors", []))}
        return body

    # The routers' routes go straight onto the app's router: FastAPI (≥ 0.16x) resolves an included
    # router on every request, which cost a third of the server's time per request. The routes
    # already carry their routers' prefixes, tags and dependencies. Matching tries routes in order,
    # at a few microseconds each, so the busiest (flow runs: runners and dispatch) come first; no two
    # routes match the same method and path (a test checks), so the order changes nothing else.
    for router in (flow_runs.router, child_runs.router, task_runs.router, deployments.router, work_pools.ws_router,
                   work_pools.router, blocks.router, events.router, webhooks.router, webhooks.hooks_router,
                   automations.router, identity.router, members.router, logs.router, variables.router,
                   concurrency_limits.router, backfills.router, tick.router):
        app.router.routes.extend(router.routes)
    # the dashboard, last: no page path starts with /api
    for router in (pages.router, run_list.router, overview.router, catalog.router, pools.router,
                   automation_pages.router, metrics_http.router):
        app.router.routes.extend(router.routes)
    app.add_middleware(FlushEvents, sink=app.state.ctx.events, outbound=app.state.ctx.outbound,
                       outbound_seconds=settings.outbound_timeout_seconds + 1)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, max_webhook_bytes=settings.max_webhook_body_bytes)
    app.add_middleware(FailureBrake, per_minute=settings.failed_requests_per_minute)  # cheapest refusal
    app.add_middleware(metrics_http.MeasureRequests, metrics=app.state.ctx.metrics)  # outermost: measures all
    return app


class FlushEvents:
    """Where no background thread writes events (Lambda, tests), a request's events are stored (and seen
    by automations) when it has been answered. A plain ASGI middleware: one attribute check per request.
    Notifications the automations queued are sent before the invocation ends (a frozen Lambda container
    would never send them), and their outcome events stored."""

    def __init__(self, app: Any, sink: Any, outbound: Any, outbound_seconds: float) -> None:
        self.app, self.sink, self.outbound, self.outbound_seconds = app, sink, outbound, outbound_seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http" and not self.sink.background and self.sink.has_pending:
            self.sink.flush()  # on the loop: on Lambda it serves this one request, and no thread hop
            if self.outbound.busy():
                from starlette.concurrency import run_in_threadpool

                await run_in_threadpool(self.outbound.drain, self.outbound_seconds)
                self.sink.flush()
