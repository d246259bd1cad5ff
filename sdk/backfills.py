"""Backfills from Python: run a deployment's schedule over a past range (see docs/backfills.md).

    from datetime import datetime, UTC
    from pushpool.backfills import backfill

    started = backfill("etl/daily", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
                       max_active=3, reprocess="failed")

A deployment made in code has it too: ``to_deployment(...).backfill(start, end)`` once applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pushpool.client import PushpoolClient
from pushpool.control_plane.backfill_models import DEFAULT_MAX_ACTIVE
from pushpool.control_plane.errors import InvalidInput

REPROCESS = ("none", "failed", "all")


def backfill(deployment: str, start: datetime, end: datetime, *, schedule: str | None = None,
             reprocess: str = "none", max_active: int = DEFAULT_MAX_ACTIVE, backwards: bool = False,
             parameters: dict[str, Any] | None = None, dry_run: bool = False,
             client: PushpoolClient | None = None) -> dict[str, Any]:
    """Start a backfill of ``deployment`` (``flow/deployment``) between ``start`` and ``end`` (timezone-aware):
    the record, with its ``progress``; with ``dry_run``, what it would create and skip."""
    if reprocess not in REPROCESS:
        raise InvalidInput(f"reprocess: {reprocess!r} is not one of {', '.join(REPROCESS)}")
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise InvalidInput(f"{name}: {value.isoformat()} has no timezone; give an aware datetime")
    own = client is None
    client = client or PushpoolClient()
    try:
        found = client.read_deployment_by_name(deployment)
        body = {"start": start.isoformat(), "end": end.isoformat(), "schedule_id": schedule, "reprocess": reprocess,
                "max_active": max_active, "backwards": backwards, "parameters": parameters or {},
                "dry_run": dry_run}
        return client.request("POST", client.ws(f"/deployments/{found['id']}/backfills"), json=body)
    finally:
        if own:
            client.close()


def read_backfill(backfill_id: str, client: PushpoolClient | None = None) -> dict[str, Any]:
    return _call("GET", f"/backfills/{backfill_id}", client)


def pause_backfill(backfill_id: str, client: PushpoolClient | None = None) -> dict[str, Any]:
    return _call("POST", f"/backfills/{backfill_id}/pause", client)


def resume_backfill(backfill_id: str, client: PushpoolClient | None = None) -> dict[str, Any]:
    return _call("POST", f"/backfills/{backfill_id}/resume", client)


def cancel_backfill(backfill_id: str, client: PushpoolClient | None = None) -> dict[str, Any]:
    return _call("POST", f"/backfills/{backfill_id}/cancel", client)


def _call(method: str, path: str, client: PushpoolClient | None) -> dict[str, Any]:
    if client is not None:
        return client.request(method, client.ws(path))
    with PushpoolClient() as own:
        return own.request(method, own.ws(path))
