"""Work pools, their queues, and the pool types pushers provide."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from pushpool.control_plane.api.deps import Access, Caller, require_actor, workspace_access
from pushpool.control_plane.api.schemas import WorkPoolCreate, WorkPoolUpdate, WorkQueueCreate, WorkQueueUpdate
from pushpool.control_plane.errors import Conflict, InvalidInput, NotFound
from pushpool.control_plane.models import ACTIVE_STATES, FlowRunFilter, LateRunPolicy, WorkPool, WorkQueue, with_changes
from pushpool.control_plane.services import host_runs
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.overrides import validate_run_overridable
from pushpool.control_plane.services.templating import validate_base_job_template
from pushpool.pushers.base import PUSHER_TYPES, default_job_template

DEFAULT_QUEUE = "default"

router = APIRouter(prefix="/api", tags=["work pools"])
ws_router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["work pools"])


def load_pool(ctx: ServiceContext, access: Access, name: str) -> WorkPool:
    pool = ctx.store.get_work_pool(access.workspace_id, name)
    if pool is None:
        raise NotFound(f"Work pool {name!r} not found")
    return pool


def load_queue(ctx: ServiceContext, access: Access, pool: WorkPool, name: str) -> WorkQueue:
    queue = ctx.store.get_work_queue(access.workspace_id, pool.id, name)
    if queue is None:
        raise NotFound(f"Work queue {name!r} not found in work pool {pool.name!r}")
    return queue


@router.get("/pool_types")
def list_pool_types(_: Caller = Depends(require_actor)) -> list[str]:
    return list(PUSHER_TYPES)


@router.get("/pool_types/{pool_type}/base_job_template")
def get_default_base_job_template(pool_type: str, _: Caller = Depends(require_actor)) -> dict:
    return default_job_template(pool_type)


@ws_router.post("/work_pools", response_model=WorkPool, status_code=status.HTTP_201_CREATED)
def create_work_pool(body: WorkPoolCreate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    default = default_job_template(body.type)  # also checks the type exists, custom template or not
    template = validate_base_job_template(body.base_job_template if body.base_job_template is not None else default)
    if host_runs.is_host_pool(body.type):
        host_runs.check_may_configure(ctx.settings, access.caller.actor, f"work pool {body.name!r} of type {body.type}")
        host_runs.refuse_block_references(ctx.settings, template, "base_job_template")
    validate_run_overridable(template, body.run_overridable_variables)
    now = ctx.clock.now()
    pool = WorkPool(
        workspace_id=access.workspace_id, name=body.name, type=body.type, description=body.description,
        base_job_template=template, concurrency_limit=body.concurrency_limit, paused=body.paused,
        prefetch_seconds=body.prefetch_seconds, late_run_policy=body.late_run_policy or LateRunPolicy(),
        run_overridable_variables=body.run_overridable_variables, crash_retries=body.crash_retries,
        crash_retry_delay_seconds=body.crash_retry_delay_seconds, created=now, updated=now,
    )
    queue = WorkQueue(workspace_id=access.workspace_id, pool_id=pool.id, name=DEFAULT_QUEUE, created=now)
    created = ctx.store.create_work_pool(pool, queue)
    ctx.events.work_pool(created, "created")
    return created


@ws_router.get("/work_pools", response_model=list[WorkPool])
def list_work_pools(access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    return ctx.store.list_work_pools(access.workspace_id)


@ws_router.get("/work_pools/{name}", response_model=WorkPool)
def read_work_pool(name: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    return load_pool(ctx, access, name)


@ws_router.patch("/work_pools/{name}", response_model=WorkPool)
def update_work_pool(name: str, body: WorkPoolUpdate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    pool = load_pool(ctx, access, name)
    changes = body.model_dump(exclude_unset=True, exclude={"clear_concurrency_limit"})
    if "base_job_template" in changes:
        validate_base_job_template(changes["base_job_template"])
    if host_runs.is_host_pool(pool.type) and {"base_job_template", "run_overridable_variables"} & set(changes):
        host_runs.check_may_configure(ctx.settings, access.caller.actor, f"work pool {name!r} of type {pool.type}")
        host_runs.refuse_block_references(ctx.settings, changes.get("base_job_template"), "base_job_template")
    if {"base_job_template", "run_overridable_variables"} & set(changes):
        validate_run_overridable(changes.get("base_job_template", pool.base_job_template),
                                 changes.get("run_overridable_variables", pool.run_overridable_variables))
    if body.clear_concurrency_limit:
        changes["concurrency_limit"] = None
    updated = with_changes(pool, {**changes, "updated": ctx.clock.now()})
    ctx.store.update_work_pool(updated)
    ctx.events.work_pool(updated, "updated" if updated.paused == pool.paused else
                         ("paused" if updated.paused else "resumed"))
    return updated


@ws_router.delete("/work_pools/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_work_pool(name: str, access: Access = Depends(workspace_access)) -> None:
    ctx = access.ctx
    access.require(Permission.WRITE)
    pool = load_pool(ctx, access, name)
    users = ctx.store.list_deployments(access.workspace_id, pool_id=pool.id)
    if users:
        names = ", ".join(d.full_name for d in users[:5])
        raise Conflict(f"Work pool {name!r} is used by {len(users)} deployment(s) ({names}); delete or move them first")
    # Runs that still have infrastructure need the pool's pusher to be stopped and cleaned up.
    active = ctx.store.list_flow_runs(access.workspace_id, FlowRunFilter(pool_id=pool.id, states=list(ACTIVE_STATES)),
                                      limit=1)
    if active:
        raise Conflict(f"Work pool {name!r} still has running flow runs (e.g. {active[0].name}); "
                       "cancel them or wait for them to finish")
    ctx.store.delete_work_pool(access.workspace_id, pool.id)
    ctx.events.work_pool(pool, "deleted")


# --------------------------------------------------------------------------- queues


@ws_router.post("/work_pools/{pool_name}/queues", response_model=WorkQueue, status_code=status.HTTP_201_CREATED)
def create_work_queue(pool_name: str, body: WorkQueueCreate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    pool = load_pool(ctx, access, pool_name)
    queue = WorkQueue(workspace_id=access.workspace_id, pool_id=pool.id, created=ctx.clock.now(),
                      **body.model_dump())
    return ctx.store.create_work_queue(queue)


@ws_router.get("/work_pools/{pool_name}/queues", response_model=list[WorkQueue])
def list_work_queues(pool_name: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    return ctx.store.list_work_queues(access.workspace_id, load_pool(ctx, access, pool_name).id)


@ws_router.get("/work_pools/{pool_name}/queues/{name}", response_model=WorkQueue)
def read_work_queue(pool_name: str, name: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    return load_queue(ctx, access, load_pool(ctx, access, pool_name), name)


@ws_router.patch("/work_pools/{pool_name}/queues/{name}", response_model=WorkQueue)
def update_work_queue(pool_name: str, name: str, body: WorkQueueUpdate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    queue = load_queue(ctx, access, load_pool(ctx, access, pool_name), name)
    changes = body.model_dump(exclude_unset=True, exclude={"clear_concurrency_limit"})
    if body.clear_concurrency_limit:
        changes["concurrency_limit"] = None
    updated = with_changes(queue, changes)
    ctx.store.update_work_queue(updated)
    return updated


@ws_router.delete("/work_pools/{pool_name}/queues/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_work_queue(pool_name: str, name: str, access: Access = Depends(workspace_access)) -> None:
    ctx = access.ctx
    access.require(Permission.WRITE)
    pool = load_pool(ctx, access, pool_name)
    queue = load_queue(ctx, access, pool, name)
    if queue.name == DEFAULT_QUEUE:
        raise InvalidInput("name: the 'default' queue cannot be deleted")
    if any(d.queue_id == queue.id for d in ctx.store.list_deployments(access.workspace_id, pool_id=pool.id)):
        raise Conflict(f"Work queue {name!r} is used by deployments; move them first")
    ctx.store.delete_work_queue(access.workspace_id, queue.id)
