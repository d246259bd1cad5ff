"""AWS Lambda entry points of the serverless control plane.

* :func:`api_handler` — the FastAPI app behind mangum, for a Lambda Function URL
  (or an HTTP API, payload format 2.0).
* :func:`tick_handler` — the EventBridge Scheduler tick (``rate(1 minute)``):
  scheduler, dispatcher and reconciler; then, while the invocation has time left,
  it sleeps until the next run falls due before the following tick and dispatches it,
  so a run scheduled at :30 does not wait for the next minute. The API wakes it at
  once (asynchronous invoke) when a run is created that is due now, or a running
  run is to be cancelled.

Configuration comes from environment variables (see ``infra/pushpool.yaml``):
``PUSHPOOL_STORE=dynamodb``, ``PUSHPOOL_DYNAMODB_TABLE``, ``PUSHPOOL_KMS_KEY_ID``,
``PUSHPOOL_PUBLIC_API_URL``, ``PUSHPOOL_TICK_FUNCTION_NAME``. The store, context and
app are built once per container, on its first invocation.

Importing this module imports no cloud SDK: boto3 comes with the store's first
client; google, azure, modal and coiled only when a pool of their type is dispatched (a test
enforces this). Nor does it import FastAPI: the app is built on the API function's first
invocation, so the tick function's cold start does not include the web framework.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pushpool.control_plane.clock import Clock
from pushpool.control_plane.errors import ConfigurationError
from pushpool.control_plane.log_format import adapt_handlers
from pushpool.control_plane.metrics import measured
from pushpool.control_plane.services.context import ServiceContext, build_context
from pushpool.control_plane.services.dispatcher import Dispatcher, next_claimable_time
from pushpool.control_plane.services.reconciler import Reconciler
from pushpool.control_plane.services.scheduler import run_scheduler
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage import open_store
from pushpool.pushers.base import PusherRegistry

log = logging.getLogger("pushpool.lambda")
logging.getLogger().setLevel(logging.INFO)

#: The EventBridge schedule's period: the tick serves runs falling due before the next one.
TICK_PERIOD_SECONDS = 60
#: Stop waiting for due runs this long before the invocation would time out.
SAFETY_MARGIN_SECONDS = 10.0
WAKE_SOURCE = "pushpool.wake"
#: A wake-up may arrive before DynamoDB's indexes show the new run (they are eventually
#: consistent, usually within a second): look again this many times, a second apart.
WAKE_RETRIES = 3


@dataclass
class Runtime:
    """What one Lambda container keeps between invocations."""

    ctx: ServiceContext
    dispatcher: Dispatcher
    reconciler: Reconciler
    sleep: Callable[[float], None] = time.sleep
    _asgi: Any = None

    @property
    def asgi(self) -> Any:
        """The FastAPI app behind mangum, built on the API function's first invocation.

        FastAPI and the routes are imported here, not with this module: the tick function
        never serves HTTP and should not pay for them on its cold start.
        """
        if self._asgi is None:
            from mangum import Mangum

            from pushpool.control_plane.app import create_app

            self._asgi = Mangum(create_app(self.ctx.settings, self.ctx.store, ctx=self.ctx), lifespan="off")
        return self._asgi


_runtime: Runtime | None = None


def build_runtime(settings: Settings, *, clock: Clock | None = None, pushers: PusherRegistry | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> Runtime:
    if not (settings.kms_key_id or settings.encryption_key):
        raise ConfigurationError("Set PUSHPOOL_KMS_KEY_ID (or PUSHPOOL_ENCRYPTION_KEY): a Lambda container cannot "
                                 "keep a generated encryption key")
    # Host processes (local:push) never run on Lambda: the function's role credentials are in reach there.
    settings = settings.model_copy(update={"host_processes": "off"})
    adapt_handlers(settings.log_format)
    store = open_store(settings)
    ctx = build_context(settings, store, clock, pushers, on_lambda=True)
    if settings.tick_function_name:
        ctx.wake_ticker = lambda_waker(settings.tick_function_name)
    return Runtime(ctx=ctx, dispatcher=Dispatcher(ctx), reconciler=Reconciler(ctx), sleep=sleep)


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(Settings())
    return _runtime


def lambda_waker(function_name: str) -> Callable[[str], None]:
    """Wakes the tick function with an asynchronous invoke (the caller does not wait for the tick)."""
    client: Any = None

    def wake(reason: str) -> None:
        nonlocal client
        if client is None:
            import boto3

            client = boto3.session.Session().client("lambda")
        client.invoke(FunctionName=function_name, InvocationType="Event",
                      Payload=json.dumps({"source": WAKE_SOURCE, "reason": reason}).encode())

    return wake


# --------------------------------------------------------------------------- handlers


_thread_state = threading.local()


def api_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if getattr(_thread_state, "loop", None) is None:
        import asyncio  # here, not at import: the tick function never needs it (~60 ms of a cold start)

        # mangum runs the app on the thread's event loop; make one rather than rely on asyncio creating
        # it implicitly (deprecated since Python 3.12, an error from 3.14).
        _thread_state.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_thread_state.loop)
    try:
        return runtime().asgi(event, context)
    finally:
        flush_metrics(runtime().ctx.metrics)


def tick_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis if context is not None else (lambda: 60_000)
    return run_tick(runtime(), remaining_ms=remaining, wake=(event or {}).get("source") == WAKE_SOURCE)


def run_tick(rt: Runtime, *, remaining_ms: Callable[[], int], wake: bool = False) -> dict[str, Any]:
    """One tick; returns (and records as the ``last_tick`` meta value) what it did."""
    ctx = rt.ctx
    started = ctx.clock.now()
    summary: dict[str, Any] = {"started": started.isoformat(), "kind": "wake" if wake else "schedule",
                               "scheduled": 0, "dispatched": 0, "reconciled": 0, "automations": 0, "errors": []}
    steps: list[tuple[str, Callable[[], int]]] = [
        ("dispatched", lambda: len(rt.dispatcher.run_once())),
        ("reconciled", rt.reconciler.run_once),
        ("automations", lambda: _event_services(ctx)),
    ]
    if not wake:
        steps.insert(0, ("scheduled", lambda: run_scheduler(ctx)))
    passes = {"scheduled": "scheduler", "dispatched": "dispatcher", "reconciled": "reconciler",
              "automations": "automations"}
    for name, step in steps:
        try:
            with measured(ctx.metrics, passes[name]):
                summary[name] += step()
        except Exception as exc:  # one failing step must not stop the others
            log.exception("%s step failed", name)
            summary["errors"].append(f"{name}: {exc}")
    for _ in range(WAKE_RETRIES if wake and summary["dispatched"] == 0 and not summary["errors"] else 0):
        rt.sleep(1.0)
        dispatched = len(rt.dispatcher.run_once())
        summary["dispatched"] += dispatched
        if dispatched:
            break
    try:
        summary["dispatched"] += _serve_until_next_tick(rt, remaining_ms)
    except Exception as exc:
        log.exception("dispatching runs due before the next tick failed")
        summary["errors"].append(f"dispatched: {exc}")
    ctx.events.flush()  # what the dispatching after the steps emitted
    if ctx.outbound.busy():  # notifications the automations queued: sent before the container freezes
        ctx.outbound.drain(max(0.0, min(ctx.settings.outbound_timeout_seconds + 1,
                                        remaining_ms() / 1000 - SAFETY_MARGIN_SECONDS)))
        ctx.events.flush()
    summary["finished"] = ctx.clock.now().isoformat()
    if not wake:
        ctx.store.set_meta("last_tick", json.dumps(summary))
    log.info("tick %s", json.dumps(summary))
    flush_metrics(ctx.metrics)
    return summary


def flush_metrics(metrics: Any) -> None:
    """On Lambda the invocation's measurements go into its log now (EMF), before the container may freeze."""
    flush = getattr(metrics, "flush", None)
    if flush is not None:
        try:
            flush()
        except Exception:  # measuring never fails an invocation
            log.exception("writing the invocation's metrics failed")


def _event_services(ctx: Any) -> int:
    from pushpool.control_plane.services.automations import run_event_services

    return run_event_services(ctx)


def _serve_until_next_tick(rt: Runtime, remaining_ms: Callable[[], int]) -> int:
    """Sleep until each run due before the next tick becomes claimable, and dispatch it then."""
    ctx, dispatched = rt.ctx, 0
    horizon_end = ctx.clock.now() + timedelta(seconds=TICK_PERIOD_SECONDS)
    while True:
        now = ctx.clock.now()
        wake_at = next_claimable_time(ctx, now, horizon_end)
        if wake_at is None:
            return dispatched
        wait = max(0.0, (wake_at - now).total_seconds())
        if remaining_ms() / 1000 - wait < SAFETY_MARGIN_SECONDS:
            return dispatched  # the next tick will take it
        rt.sleep(wait)
        dispatched += len(rt.dispatcher.run_once())
