"""Backfills: run a deployment's schedule over a past range (create, dry run, list, read, pause, resume, cancel).

Creating one stores a record; the scheduler pass makes its runs (control_plane/services/backfills.py).
Creating, pausing, resuming and cancelling need the ``run`` permission (a backfill makes runs);
reading needs ``read``. Everything is scoped to the caller's workspace.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response, status

from pushpool.control_plane.api.deployments import load_deployment
from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.schemas import BackfillCreate
from pushpool.control_plane.backfill_models import Backfill
from pushpool.control_plane.errors import NotFound
from pushpool.control_plane.services import backfills
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["backfills"])

#: Occurrences a dry run lists (its counts cover them all).
DRY_RUN_LISTED = 1000


def _out(backfill: Backfill) -> dict[str, Any]:
    return {**backfill.model_dump(mode="json"), "progress": backfills.progress(backfill)}


def _load(access: Access, backfill_id: str) -> Backfill:
    backfill = access.ctx.store.get_backfill(access.workspace_id, backfill_id)
    if backfill is None:
        raise NotFound("Backfill not found")
    return backfill


@router.post("/deployments/{deployment_id}/backfills", status_code=status.HTTP_201_CREATED)
def create_backfill(deployment_id: str, body: BackfillCreate, response: Response,
                    access: Access = Depends(workspace_access)) -> dict[str, Any]:
    """Run the schedule's occurrences between ``start`` and ``end`` (at most 10,000); with ``dry_run``, say what
    would be created and skipped instead."""
    access.require(Permission.RUN)
    ctx = access.ctx
    deployment = load_deployment(ctx, access, deployment_id)
    request = backfills.BackfillRequest(
        start=body.start, end=body.end, schedule_id=body.schedule_id, reprocess=body.reprocess,
        max_active=body.max_active, backwards=body.backwards, parameters=body.parameters)
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
        decisions = backfills.plan(ctx, deployment, request)
        return {"dry_run": True, "deployment": deployment.full_name, "total": len(decisions),
                "to_create": sum(1 for d in decisions if d.create),
                "to_skip": sum(1 for d in decisions if not d.create),
                "runs": [{"scheduled_time": d.occurrence.isoformat(), "create": d.create, "reason": d.reason}
                         for d in decisions[:DRY_RUN_LISTED]]}
    created_by = access.caller.actor.name if access.caller.actor else None
    return _out(backfills.create(ctx, deployment, request, created_by=created_by))


@router.get("/backfills")
def list_backfills(deployment_id: str | None = None, limit: int = Query(default=50, ge=1, le=200),
                   access: Access = Depends(workspace_access)) -> list[dict[str, Any]]:
    access.require(Permission.READ)
    return [_out(b) for b in access.ctx.store.list_backfills(access.workspace_id, deployment_id, limit)]


@router.get("/backfills/{backfill_id}")
def read_backfill(backfill_id: str, access: Access = Depends(workspace_access)) -> dict[str, Any]:
    access.require(Permission.READ)
    return _out(_load(access, backfill_id))


@router.post("/backfills/{backfill_id}/pause")
def pause_backfill(backfill_id: str, access: Access = Depends(workspace_access)) -> dict[str, Any]:
    """No more runs until resumed (those made already go on)."""
    access.require(Permission.RUN)
    return _out(backfills.set_paused(access.ctx, _load(access, backfill_id), True))


@router.post("/backfills/{backfill_id}/resume")
def resume_backfill(backfill_id: str, access: Access = Depends(workspace_access)) -> dict[str, Any]:
    access.require(Permission.RUN)
    return _out(backfills.set_paused(access.ctx, _load(access, backfill_id), False))


@router.post("/backfills/{backfill_id}/cancel")
def cancel_backfill(backfill_id: str, access: Access = Depends(workspace_access)) -> dict[str, Any]:
    """No more runs, and its runs not final yet are cancelled."""
    access.require(Permission.RUN)
    return _out(backfills.cancel_backfill(access.ctx, _load(access, backfill_id)))
