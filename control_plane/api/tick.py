"""``POST /api/tick``: one pass of the scheduler, dispatcher, reconciler and automations, called by a cron service.

A replica that scales to zero (Cloud Run with request-based billing, a Container App with no minimum replica) has
no CPU between requests, so its own tick loop stalls; a cron service (Cloud Scheduler, a Kubernetes CronJob)
calling this route every minute keeps schedules, dispatch and reconciliation going (runs then start up to a
minute late, as on the serverless AWS stack without a wake-up).

It belongs to no workspace and takes no API key: the caller shows the operator's ``PUSHPOOL_TICK_TOKEN`` as a
bearer token, compared in constant time. Without that setting the route answers 404, as any unknown path does.
A pass already running in this process is not doubled: the call answers at once with ``{"skipped": true}``.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from pushpool.control_plane.errors import Conflict, NotFound, Unauthorized

router = APIRouter(tags=["operations"])


@router.post("/api/tick")
async def tick(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    token = request.app.state.ctx.settings.tick_token
    if token is None:
        raise NotFound("no such route: POST /api/tick exists only where PUSHPOOL_TICK_TOKEN is set")
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(),
                                                             token.get_secret_value().encode()):
        raise Unauthorized("POST /api/tick takes `Authorization: Bearer <PUSHPOOL_TICK_TOKEN>` (not an API key)")
    ticker = getattr(request.app.state, "ticker", None)
    if ticker is None:
        raise Conflict("this control plane runs no tick loop here (on Lambda, EventBridge ticks it)")
    done = await run_in_threadpool(ticker.tick_if_idle)
    return {"skipped": True} if done is None else {"skipped": False, **done}
