"""The FastAPI application: ``create_app(settings, store)``.

Importing this module must stay cheap and must not import any cloud SDK: the
Lambda handler imports it on every cold start (a test enforces this).
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from control_plane import __doc__ as _doc
from control_plane.api import blocks, deployments, flow_runs, identity, work_pools
from control_plane.clock import Clock, SystemClock
from control_plane.errors import PushpoolError, Unauthorized
from control_plane.services.context import ServiceContext
from control_plane.services.crypto import BlockCipher, Cipher, load_or_create_key
from control_plane.settings import Settings
from control_plane.storage.base import Store
from pushers.base import PusherContext, PusherRegistry

VERSION = "0.1.0"


def build_cipher(settings: Settings, store: Store) -> Cipher:
    """KMS envelope encryption when a KMS key is configured, else Fernet with the local or given key."""
    if settings.kms_key_id:
        from control_plane.services.kms_crypto import KmsBlockCipher

        return KmsBlockCipher(settings.kms_key_id, store)
    return BlockCipher(settings.encryption_key or load_or_create_key(settings.home))


def build_context(settings: Settings, store: Store, clock: Clock | None = None,
                  pushers: PusherRegistry | None = None) -> ServiceContext:
    return ServiceContext(
        store=store, settings=settings, clock=clock or SystemClock(), cipher=build_cipher(settings, store),
        pushers=pushers or PusherRegistry(PusherContext(state_dir=settings.home, api_url=settings.api_url)),
    )


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

    @app.get("/api/health", tags=["health"])
    def health() -> dict:
        body: dict = {"status": "ok", "version": VERSION, "store": settings.store}
        last_tick = app.state.ctx.store.get_meta("last_tick")  # recorded by the Lambda tick
        if last_tick:
            tick = json.loads(last_tick)
            body["last_tick"] = {"finished": tick.get("finished"), "errors": len(tick.get("errors", []))}
        return body

    for module in (identity, work_pools, blocks, deployments, flow_runs):
        app.include_router(module.router)
    app.include_router(work_pools.ws_router)
    return app
