"""Child runs: a flow starts a run of another deployment (``run_deployment`` inside a flow) with its run token.

The child records its parent (``parent_flow_run_id``); the parent's token may read its children
(to wait for them), never act on them, and a child's token cannot reach its parent. Cancelling a
parent cancels its children. A run may start ``PUSHPOOL_MAX_CHILD_RUNS_PER_FLOW_RUN`` children, and
runs nest at most ``PUSHPOOL_MAX_FLOW_RUN_DEPTH`` deep (a flow that starts itself stops there).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.flow_runs import load_run, store_new_run
from pushpool.control_plane.api.responses import records_json
from pushpool.control_plane.api.schemas import ChildRunCreate
from pushpool.control_plane.errors import Conflict, NotFound, TooLarge
from pushpool.control_plane.models import FlowRun, StateType
from pushpool.control_plane.services import flow_runs
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.overrides import check_run_overrides

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["flow runs"])


@router.post("/flow_runs/{run_id}/children", response_model=FlowRun, status_code=201)
def start_child_run(run_id: str, body: ChildRunCreate, access: Access = Depends(workspace_access)) -> Response:
    """Start a run of ``body.deployment`` as a child of this run (its own run token, or a caller who may run)."""
    ctx = access.ctx
    parent = load_run(ctx, access, run_id, Permission.RUN)
    if parent.state.type is not StateType.RUNNING:
        raise Conflict(f"Flow run {parent.name!r} is {parent.state.type.value}: only a running flow starts children")
    settings = ctx.settings
    if parent.depth + 1 > settings.max_flow_run_depth:
        raise Conflict(f"Flow run {parent.name!r} is {parent.depth} runs deep; runs nest at most "
                       f"{settings.max_flow_run_depth} deep (PUSHPOOL_MAX_FLOW_RUN_DEPTH)")
    if ctx.store.count_child_runs(parent.id) >= settings.max_child_runs_per_flow_run:
        raise TooLarge(f"Flow run {parent.name!r} has started {settings.max_child_runs_per_flow_run} runs, the most "
                       "one run may (PUSHPOOL_MAX_CHILD_RUNS_PER_FLOW_RUN)")
    flow_name, _, name = body.deployment.partition("/")
    deployment = ctx.store.get_deployment_by_name(access.workspace_id, flow_name, name)
    if deployment is None:
        raise NotFound(f"deployment: {body.deployment} not found")
    pool = ctx.store.get_work_pool_by_id(access.workspace_id, deployment.pool_id)
    if pool is None:
        raise NotFound("The deployment's work pool no longer exists")
    # A flow's code is not a developer: its children get only the variables any run may set.
    may_write = not access.caller.is_run_token and Permission.WRITE in access.permissions
    check_run_overrides(ctx.settings, pool, body.job_variables, may_write=may_write, actor=access.caller.actor)
    child = flow_runs.build_flow_run(
        ctx, deployment, pool, scheduled_time=body.scheduled_time or ctx.clock.now(), parameters=body.parameters,
        job_variables=body.job_variables, tags=body.tags, name=body.name, parent=parent)
    return store_new_run(ctx, pool, child)


@router.get("/flow_runs/{run_id}/children", response_model=list[FlowRun])
def list_child_runs(run_id: str, access: Access = Depends(workspace_access)) -> Response:
    """The runs this run's flow started, oldest first."""
    run = load_run(access.ctx, access, run_id)
    return records_json(FlowRun, access.ctx.store.list_child_runs(run.id))
