"""Task runs: the runner reports them in batches with its run token; anyone who may read the run lists them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.flow_runs import load_run
from pushpool.control_plane.api.schemas import TaskRunBatch
from pushpool.control_plane.errors import InvalidInput, TooLarge
from pushpool.control_plane.models import TaskRun
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["task runs"])

@router.post("/flow_runs/{run_id}/task_runs", status_code=status.HTTP_202_ACCEPTED)
def report_task_runs(run_id: str, body: TaskRunBatch, access: Access = Depends(workspace_access)) -> dict:
    """Record (insert or replace) a batch of the run's task runs: its own run token, or a developer."""
    ctx = access.ctx
    run = load_run(ctx, access, run_id, Permission.WRITE)
    now = ctx.clock.now()
    records = {}
    for i, report in enumerate(body.task_runs):
        if report.flow_run_id not in (None, run.id):
            raise InvalidInput(f"task_runs.{i}.flow_run_id: not this flow run ({run.id})")
        records[report.id] = TaskRun(**report.model_dump(exclude={"flow_run_id"}), workspace_id=run.workspace_id,
                                     flow_run_id=run.id, updated=now)  # the last report of an id wins
    limit = ctx.settings.max_task_run_reports_per_flow_run
    if records and not ctx.store.save_task_runs(run.id, list(records.values()), max_reports=limit):
        raise TooLarge(f"flow run {run.name!r} has reported {limit} task runs, the most one run may "
                       "(PUSHPOOL_MAX_TASK_RUN_REPORTS_PER_FLOW_RUN); later ones are not recorded")
    return {"accepted": len(records)}


@router.get("/flow_runs/{run_id}/task_runs", response_model=list[TaskRun])
def list_task_runs(run_id: str, after: str | None = Query(default=None, max_length=64),
                   limit: int = Query(default=200, ge=1, le=1000), access: Access = Depends(workspace_access)):
    """The run's task runs in the order they started (``after``: the last id of the previous page)."""
    ctx = access.ctx
    run = load_run(ctx, access, run_id)
    return ctx.store.list_task_runs(run.id, after=after, limit=limit)
