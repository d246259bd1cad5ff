"""Tag concurrency limits: set and list them (developers), and the slots task runs take (``pushpool
concurrency-limit``; the runner takes and gives back slots with its run token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.schemas import ConcurrencyLimitSet, SlotRelease, SlotRequest
from pushpool.control_plane.errors import Conflict, NotFound, TooLarge
from pushpool.control_plane.models import ConcurrencyLimit
from pushpool.control_plane.services import tag_limits
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["concurrency limits"])

TagPath = Path(min_length=1, max_length=100, description="The tag")


def _holder(access: Access, holder: str) -> str:
    """A run token takes slots for its own task runs only (its holders carry its run's id); people need the run
    permission to take them for others."""
    access.require_unless_run_token(Permission.RUN)
    return holder if access.caller.run is None else f"{access.caller.run.id}/{holder}"


@router.get("/concurrency_limits", response_model=list[ConcurrencyLimit])
def list_limits(access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    return access.ctx.store.list_concurrency_limits(access.workspace_id)


@router.get("/concurrency_limits/{tag}", response_model=ConcurrencyLimit)
def read_limit(tag: str = TagPath, access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    limit = access.ctx.store.get_concurrency_limit(access.workspace_id, tag)
    if limit is None:
        raise NotFound(f"No concurrency limit for tag {tag!r}")
    return limit


@router.put("/concurrency_limits/{tag}", response_model=ConcurrencyLimit)
def set_limit(body: ConcurrencyLimitSet, tag: str = TagPath, access: Access = Depends(workspace_access)):
    """Create or change a tag's limit (slots already held stay until they are given back)."""
    access.require(Permission.WRITE)
    ctx = access.ctx
    now = ctx.clock.now()
    existing = ctx.store.get_concurrency_limit(access.workspace_id, tag)
    if existing is None and len(ctx.store.list_concurrency_limits(access.workspace_id)) >= \
            ctx.settings.max_concurrency_limits_per_workspace:
        raise TooLarge(f"workspace {access.workspace.name!r} has {ctx.settings.max_concurrency_limits_per_workspace} "
                       "concurrency limits, the most it may (PUSHPOOL_MAX_CONCURRENCY_LIMITS_PER_WORKSPACE)")
    limit = (existing.model_copy(update={"limit": body.limit, "updated": now}) if existing else
             ConcurrencyLimit(workspace_id=access.workspace_id, tag=tag, limit=body.limit, created=now, updated=now))
    if not ctx.store.save_concurrency_limits([limit]):
        raise Conflict(f"The limit of tag {tag!r} changed meanwhile; try again")
    return ctx.store.get_concurrency_limit(access.workspace_id, tag)


@router.delete("/concurrency_limits/{tag}", status_code=status.HTTP_204_NO_CONTENT)
def delete_limit(tag: str = TagPath, access: Access = Depends(workspace_access)) -> None:
    access.require(Permission.WRITE)
    if not access.ctx.store.delete_concurrency_limit(access.workspace_id, tag):
        raise NotFound(f"No concurrency limit for tag {tag!r}")


@router.post("/concurrency_limits/acquire")
def acquire_slots(body: SlotRequest, access: Access = Depends(workspace_access)) -> dict:
    """Take a slot of every limited tag in ``tags`` for ``holder``, all or none; ``acquired: false`` says which
    are full and when to ask again. Asking again while holding them renews the lease."""
    holder = _holder(access, body.holder)
    return tag_limits.acquire(access.ctx, access.workspace_id, body.tags, holder, body.lease_seconds)


@router.post("/concurrency_limits/release")
def release_slots(body: SlotRelease, access: Access = Depends(workspace_access)) -> dict:
    return {"released": tag_limits.release(access.ctx, access.workspace_id, body.tags, _holder(access, body.holder))}
