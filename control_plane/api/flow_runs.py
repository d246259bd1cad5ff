"""Flow runs: create from a deployment, list, read, state history, set state, cancel, retry, delete."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Query, Response, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.offload import on_loop_unless_busy
from pushpool.control_plane.api.responses import record_json, records_json
from pushpool.control_plane.api.schemas import FlowRunCreate, StateUpdate
from pushpool.control_plane.errors import Forbidden, InvalidInput, NotFound
from pushpool.control_plane.models import FlowRun, FlowRunFilter, State, StateType, WorkPool
from pushpool.control_plane.services import flow_runs
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.overrides import check_run_overrides

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["flow runs"])

#: What a run token may report about its own run.
RUNNER_STATES = frozenset({StateType.RUNNING, StateType.COMPLETED, StateType.FAILED})
#: A new run due this soon wakes the ticker at once instead of waiting for its next round (Lambda: a minute).
WAKE_WITHIN_SECONDS = 60


def load_run(ctx: ServiceContext, access: Access, run_id: str, permission: Permission = Permission.READ) -> FlowRun:
    own = access.caller.run
    if own is not None and own.id != run_id and permission is Permission.READ:
        child = ctx.store.get_flow_run(access.workspace_id, run_id)
        if child is not None and child.parent_flow_run_id == own.id:  # a run may watch the runs it started
            return child
    access.require_run(run_id, permission)
    if own is not None and own.workspace_id == access.workspace_id:
        return own  # a run token's own run, read by its authentication in this same request
    run = ctx.store.get_flow_run(access.workspace_id, run_id)
    if run is None:
        raise NotFound("Flow run not found")
    return run


@router.post("/deployments/{deployment_id}/runs", response_model=FlowRun, status_code=status.HTTP_201_CREATED)
async def create_flow_run(deployment_id: str, body: FlowRunCreate, access: Access = Depends(workspace_access)):
    return await on_loop_unless_busy(access.ctx, _create_flow_run, deployment_id, body, access)


def _create_flow_run(deployment_id: str, body: FlowRunCreate, access: Access) -> Response:
    ctx = access.ctx
    access.require(Permission.RUN)
    deployment = ctx.store.get_deployment(access.workspace_id, deployment_id)
    if deployment is None:
        raise NotFound("Deployment not found")
    pool = ctx.store.get_work_pool_by_id(access.workspace_id, deployment.pool_id)
    if pool is None:
        raise NotFound("The deployment's work pool no longer exists")
    check_run_overrides(ctx.settings, pool, body.job_variables, may_write=Permission.WRITE in access.permissions,
                        actor=access.caller.actor)
    run = flow_runs.build_flow_run(
        ctx, deployment, pool, scheduled_time=body.scheduled_time or ctx.clock.now(), parameters=body.parameters,
        job_variables=body.job_variables, tags=body.tags, name=body.name,
    )
    return store_new_run(ctx, pool, run)


def store_new_run(ctx: ServiceContext, pool: WorkPool, run: FlowRun) -> Response:
    created = ctx.store.create_flow_run(run)
    ctx.events.flow_run_state(created, None)
    if created.scheduled_time <= ctx.clock.now() + timedelta(seconds=WAKE_WITHIN_SECONDS + pool.prefetch_seconds):
        ctx.request_tick("flow run created")
    return record_json(FlowRun, created, status.HTTP_201_CREATED)


@router.get("/flow_runs", response_model=list[FlowRun])
def list_flow_runs(
    state: list[StateType] | None = Query(default=None),
    deployment_id: str | None = None,
    work_pool: str | None = None,
    flow_name: str | None = Query(default=None, max_length=200),
    tag: list[str] | None = Query(default=None, max_length=10, description="runs carrying every one of these"),
    scheduled_after: datetime | None = None,
    scheduled_before: datetime | None = None,
    sort: str = Query(default="scheduled_desc", pattern="^scheduled_(asc|desc)$"),
    limit: int = Query(default=200, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10**9),
    access: Access = Depends(workspace_access),
):
    ctx = access.ctx
    access.require(Permission.READ)
    pool_id = None
    if work_pool is not None:
        pool = ctx.store.get_work_pool(access.workspace_id, work_pool)
        if pool is None:
            return []
        pool_id = pool.id
    flt = FlowRunFilter(states=state, deployment_id=deployment_id, pool_id=pool_id, flow_name=flow_name, tags=tag,
                        scheduled_after=scheduled_after, scheduled_before=scheduled_before, sort=sort)
    return records_json(FlowRun, ctx.store.list_flow_runs(access.workspace_id, flt, limit=limit, offset=offset))


@router.get("/flow_runs/{run_id}", response_model=FlowRun)
async def read_flow_run(run_id: str, access: Access = Depends(workspace_access)):
    return await on_loop_unless_busy(
        access.ctx, lambda: record_json(FlowRun, load_run(access.ctx, access, run_id)))


@router.get("/flow_runs/{run_id}/states", response_model=list[State])
def read_state_history(run_id: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    return ctx.store.get_state_history(load_run(ctx, access, run_id).id)


@router.post("/flow_runs/{run_id}/set_state", response_model=FlowRun)
async def set_flow_run_state(run_id: str, body: StateUpdate, access: Access = Depends(workspace_access)):
    """Move a run along the state machine; an illegal transition is a 409."""
    return await on_loop_unless_busy(access.ctx, _set_flow_run_state, run_id, body, access)


def _set_flow_run_state(run_id: str, body: StateUpdate, access: Access) -> Response:
    ctx = access.ctx
    run = load_run(ctx, access, run_id, Permission.WRITE)
    if access.caller.is_run_token and body.type not in RUNNER_STATES:
        raise Forbidden("A run token may only report RUNNING, COMPLETED or FAILED")
    if body.type is StateType.CANCELLED and not run.state.type.is_final:
        return record_json(FlowRun, flow_runs.cancel(ctx, run))
    if body.result is None:
        return record_json(FlowRun, flow_runs.set_state(ctx, run, body.type, body.message, body.name))
    if body.type is not StateType.COMPLETED:
        raise InvalidInput("result: only a COMPLETED state carries a result")
    return record_json(FlowRun, flow_runs.set_state(ctx, run, body.type, body.message, body.name,
                                                    result=body.result))


@router.post("/flow_runs/{run_id}/cancel", response_model=FlowRun)
def cancel_flow_run(run_id: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.RUN)
    return record_json(FlowRun, flow_runs.cancel(ctx, load_run(ctx, access, run_id, Permission.RUN)))


@router.post("/flow_runs/{run_id}/retry", response_model=FlowRun, status_code=status.HTTP_201_CREATED)
def retry_flow_run(run_id: str, access: Access = Depends(workspace_access)):
    """A new attempt of a finished run: a new run of its deployment, due now, with the same parameters, job
    variables and tags (``retry_of`` names the original). The caller needs the run permission, and may set those
    job variables (a runner cannot retry its way into variables only a developer may set)."""
    ctx = access.ctx
    access.require(Permission.RUN)
    run = load_run(ctx, access, run_id, Permission.RUN)
    deployment = ctx.store.get_deployment(access.workspace_id, run.deployment_id)
    if deployment is None:
        raise NotFound(f"Deployment {run.flow_name}/{run.deployment_name} of this run no longer exists")
    pool = ctx.store.get_work_pool_by_id(access.workspace_id, deployment.pool_id)
    if pool is None:
        raise NotFound("The deployment's work pool no longer exists")
    check_run_overrides(ctx.settings, pool, run.job_variables, may_write=Permission.WRITE in access.permissions,
                        actor=access.caller.actor)
    return store_new_run(ctx, pool, flow_runs.retry(ctx, run, deployment, pool))


@router.delete("/flow_runs/{run_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_flow_run(run_id: str, access: Access = Depends(workspace_access)) -> None:
    """Delete a run with its state history: one that is SCHEDULED, or finished with its infrastructure cleaned
    up (409 otherwise, saying what to do). Its events stay in the event log."""
    ctx = access.ctx
    access.require(Permission.WRITE)
    flow_runs.delete(ctx, load_run(ctx, access, run_id, Permission.WRITE))
