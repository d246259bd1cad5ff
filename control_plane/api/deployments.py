"""Deployments (and the flows they name): create-or-update by name, read, update, delete; schedules
materialise at once."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.schemas import DeploymentCreate, DeploymentUpdate, FlowSummary, ScheduleIn
from pushpool.control_plane.errors import InvalidInput, NotFound
from pushpool.control_plane.models import CollisionStrategy, Deployment, Overlap, Schedule, WorkPool, with_changes
from pushpool.control_plane.services import host_runs
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.flow_runs import validate_parameters
from pushpool.control_plane.services.json_schema import schema_problem
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.scheduler import replace_future_runs
from pushpool.control_plane.services.schedules import validate_schedule
from pushpool.control_plane.services.templating import check_cloud_rules, validate_job_variables

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["deployments"])


def load_deployment(ctx: ServiceContext, access: Access, deployment_id: str) -> Deployment:
    deployment = ctx.store.get_deployment(access.workspace_id, deployment_id)
    if deployment is None:
        raise NotFound("Deployment not found")
    return deployment


def _schedules(items: list[ScheduleIn], previous: list[Schedule], budget_seconds: float) -> list[Schedule]:
    """Build schedule records; a schedule identical to an existing one keeps its id (and its runs)."""
    out = []
    known = {s.id for s in previous}
    for i, item in enumerate(items):
        if item.id is not None and item.id not in known:
            raise InvalidInput(f"schedules[{i}].id: the deployment has no schedule {item.id!r}")
        schedule = Schedule(
            slug=item.slug, cron=item.cron, interval_seconds=item.interval, anchor_date=item.anchor_date,
            rrule=item.rrule, timezone=item.timezone, parameters=item.parameters, active=item.active,
        )
        validate_schedule(schedule, f"schedules[{i}]", budget_seconds)
        if item.id is not None:
            schedule = schedule.model_copy(update={"id": item.id})
        else:
            for old in previous:
                if old.model_dump(exclude={"id"}) == schedule.model_dump(exclude={"id"}):
                    schedule = old
                    break
        out.append(schedule)
    if len({s.id for s in out}) != len(out):
        raise InvalidInput("schedules: the same schedule appears twice")
    slugs = [s.slug for s in out if s.slug]
    if len(slugs) != len(set(slugs)):
        raise InvalidInput("schedules: slugs must be unique within a deployment")
    return out


def _check(ctx: ServiceContext, deployment: Deployment, pool: WorkPool) -> None:
    limited = deployment.concurrency_limit not in (None, 1) or \
        deployment.collision_strategy is not CollisionStrategy.ENQUEUE
    if deployment.overlap is not Overlap.ALLOW and limited:
        raise InvalidInput(f"overlap: {deployment.overlap.value} runs one run at a time and decides what happens to "
                           "the others; leave concurrency_limit and collision_strategy unset with it")
    variables = pool.base_job_template.get("variables", {})
    validate_job_variables(variables, deployment.job_variables)
    check_cloud_rules(pool.type, variables, deployment.job_variables)
    if deployment.parameter_schema is not None:
        problem = schema_problem(deployment.parameter_schema)
        if problem is not None:
            raise InvalidInput(f"parameter_schema: not a valid JSON schema: {problem}")
    validate_parameters(deployment, deployment.parameters, require=False)  # runs must supply what is missing
    for i, schedule in enumerate(deployment.schedules):
        try:
            validate_parameters(deployment, {**deployment.parameters, **schedule.parameters})
        except InvalidInput as exc:
            raise InvalidInput(f"schedules[{i}].{exc.message}") from None


#: What decides the process a deployment starts; on a host pool only an allowed actor changes these.
_WHAT_RUNS = ("entrypoint", "job_variables", "image", "parameter_schema")


def _check_host(access: Access, existing: Deployment | None, deployment: Deployment, pool: WorkPool) -> None:
    """On ``local:push`` (runs are processes on this machine): who may create or change what a deployment runs."""
    if not host_runs.is_host_pool(pool.type):
        return
    host_runs.refuse_block_references(access.ctx.settings, deployment.job_variables, "job_variables")
    if existing is None or existing.pool_id != deployment.pool_id or \
            any(getattr(existing, f) != getattr(deployment, f) for f in _WHAT_RUNS):
        host_runs.check_may_configure(access.ctx.settings, access.caller.actor,
                                      f"deployment {deployment.full_name!r} of local:push pool {pool.name!r}")


def _resolve_queue(ctx: ServiceContext, access: Access, pool: WorkPool, queue_name: str | None) -> str:
    queue = ctx.store.get_work_queue(access.workspace_id, pool.id, queue_name or "default")
    if queue is None:
        raise InvalidInput(f"work_queue_name: work pool {pool.name!r} has no queue {queue_name!r}")
    return queue.id


@router.post("/deployments", response_model=Deployment, status_code=status.HTTP_201_CREATED)
def create_or_update_deployment(body: DeploymentCreate, response: Response, access: Access = Depends(workspace_access)):
    """Create the deployment, or update it when ``flow_name/name`` exists (deploying again never duplicates)."""
    ctx = access.ctx
    access.require(Permission.WRITE)
    pool = ctx.store.get_work_pool(access.workspace_id, body.work_pool_name)
    if pool is None:
        raise InvalidInput(f"work_pool_name: work pool {body.work_pool_name!r} does not exist; "
                           f"create it with: pushpool work-pool create {body.work_pool_name} --type local:push")
    existing = ctx.store.get_deployment_by_name(access.workspace_id, body.flow_name, body.name)
    now = ctx.clock.now()
    fields: dict[str, Any] = body.model_dump(exclude={"work_pool_name", "work_queue_name", "schedules"})
    fields.update(
        pool_id=pool.id, queue_id=_resolve_queue(ctx, access, pool, body.work_queue_name), updated=now,
        schedules=_schedules(body.schedules, existing.schedules if existing else [],
                             ctx.settings.schedule_budget_seconds),
    )
    if existing is None:
        deployment = Deployment(workspace_id=access.workspace_id, created=now, **fields)
        _check(ctx, deployment, pool)
        _check_host(access, None, deployment, pool)
        ctx.store.create_deployment(deployment)
        ctx.events.deployment(deployment, "created")
    else:
        response.status_code = status.HTTP_200_OK
        deployment = with_changes(existing, fields)
        if deployment.model_dump(exclude={"updated"}) == existing.model_dump(exclude={"updated"}):
            return existing  # deploying the same thing again changes nothing
        _check(ctx, deployment, pool)
        _check_host(access, existing, deployment, pool)
        ctx.store.update_deployment(deployment)
        ctx.events.deployment(deployment, "updated")
    if existing is None or _schedule_changed(existing, deployment):
        replace_future_runs(ctx, deployment, pool)
    return deployment


def _schedule_changed(old: Deployment, new: Deployment) -> bool:
    return (old.schedules != new.schedules or old.paused != new.paused or old.pool_id != new.pool_id
            or old.queue_id != new.queue_id or old.parameters != new.parameters)


@router.get("/deployments", response_model=list[Deployment])
def list_deployments(work_pool: str | None = None, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    pool_id = None
    if work_pool is not None:
        pool = ctx.store.get_work_pool(access.workspace_id, work_pool)
        if pool is None:
            return []
        pool_id = pool.id
    return ctx.store.list_deployments(access.workspace_id, pool_id=pool_id)


@router.get("/flows", response_model=list[FlowSummary], tags=["flows"])
def list_flows(access: Access = Depends(workspace_access)):
    """The flows of the workspace, each with its deployments (a flow exists while it has one)."""
    access.require(Permission.READ)
    by_flow: dict[str, list[Deployment]] = defaultdict(list)
    for deployment in access.ctx.store.list_deployments(access.workspace_id):
        by_flow[deployment.flow_name].append(deployment)
    return [FlowSummary(name=name, deployments=sorted(d.name for d in group),
                        created=min(d.created for d in group), updated=max(d.updated for d in group))
            for name, group in sorted(by_flow.items())]


@router.get("/deployments/name/{flow_name}/{name}", response_model=Deployment)
def read_deployment_by_name(flow_name: str, name: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    deployment = ctx.store.get_deployment_by_name(access.workspace_id, flow_name, name)
    if deployment is None:
        raise NotFound(f"Deployment {flow_name}/{name} not found")
    return deployment


@router.get("/deployments/{deployment_id}", response_model=Deployment)
def read_deployment(deployment_id: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    if access.caller.run is not None:  # a run token may read its own run's deployment
        if access.caller.run.deployment_id != deployment_id:
            raise NotFound("Deployment not found")
    else:
        access.require(Permission.READ)
    return load_deployment(ctx, access, deployment_id)


@router.patch("/deployments/{deployment_id}", response_model=Deployment)
def update_deployment(deployment_id: str, body: DeploymentUpdate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    existing = load_deployment(ctx, access, deployment_id)
    pool = ctx.store.get_work_pool_by_id(access.workspace_id, existing.pool_id)
    if pool is None:
        raise NotFound("The deployment's work pool no longer exists")
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"work_queue_name", "schedules"})
    if body.schedules is not None:
        changes["schedules"] = _schedules(body.schedules, existing.schedules, ctx.settings.schedule_budget_seconds)
    if "work_queue_name" in body.model_fields_set:
        changes["queue_id"] = _resolve_queue(ctx, access, pool, body.work_queue_name)
    deployment = with_changes(existing, {**changes, "updated": ctx.clock.now()})
    _check(ctx, deployment, pool)
    _check_host(access, existing, deployment, pool)
    ctx.store.update_deployment(deployment)
    ctx.events.deployment(deployment, "updated")
    if _schedule_changed(existing, deployment):
        replace_future_runs(ctx, deployment, pool)
    return deployment


@router.delete("/deployments/{deployment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_deployment(deployment_id: str, access: Access = Depends(workspace_access)) -> None:
    ctx = access.ctx
    access.require(Permission.WRITE)
    deployment = load_deployment(ctx, access, deployment_id)
    ctx.store.delete_deployment(access.workspace_id, deployment.id)
    ctx.events.deployment(deployment, "deleted")
