"""Who is calling, workspaces, API keys and service accounts (users and members: :mod:`.members`)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict

from pushpool.control_plane.api.deps import (
    Access,
    Caller,
    authenticate,
    get_ctx,
    require_actor,
    require_admin,
    workspace_access,
)
from pushpool.control_plane.api.schemas import (
    TEN_YEARS,
    ActorOut,
    ApiKeyCreate,
    ApiKeyOut,
    IssuedKey,
    Me,
    MembershipOut,
    ServiceAccountCreate,
    ServiceAccountIssued,
    ServiceAccountOut,
    WorkspaceCreate,
)
from pushpool.control_plane.errors import AlreadyExists, Forbidden, NotFound
from pushpool.control_plane.models import Actor, ActorKind, ApiKey, Membership, Role, Workspace
from pushpool.control_plane.services import keys
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api", tags=["identity"])


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(**key.model_dump(include=set(ApiKeyOut.model_fields)))


def actor_out(actor: Actor) -> ActorOut:
    return ActorOut(**actor.model_dump(include=set(ActorOut.model_fields)))


def issue_key(ctx: ServiceContext, actor: Actor, name: str, expires_in_seconds: int | None = None) -> IssuedKey:
    """Mint a key for ``actor``; the clear key exists only in this return value."""
    secret = keys.mint_api_key(actor.kind)
    now = ctx.clock.now()
    record = ApiKey(
        actor_id=actor.id, name=name, key_hash=keys.hash_secret(secret), prefix=keys.display_prefix(secret),
        created=now, expires_at=now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None,
    )
    ctx.store.create_api_key(record)
    return IssuedKey(key=secret, api_key=key_out(record))


@router.get("/me", response_model=Me)
def me(caller: Caller = Depends(authenticate), ctx: ServiceContext = Depends(get_ctx)) -> Me:
    if caller.run is not None:
        return Me(kind="run_token", flow_run_id=caller.run.id, workspace_id=caller.run.workspace_id)
    assert caller.actor is not None and caller.key is not None
    memberships = []
    for m in ctx.store.list_memberships(caller.actor.id):
        ws = ctx.store.get_workspace(m.workspace_id)
        if ws is not None:
            memberships.append(MembershipOut(workspace_id=ws.id, workspace_name=ws.name, role=m.role))
    return Me(kind=caller.actor.kind.value, actor=actor_out(caller.actor), api_key=key_out(caller.key),
              memberships=memberships)


@router.get("/workspaces", response_model=list[Workspace])
def list_workspaces(caller: Caller = Depends(require_actor), ctx: ServiceContext = Depends(get_ctx)):
    assert caller.actor is not None
    found = (ctx.store.get_workspace(m.workspace_id) for m in ctx.store.list_memberships(caller.actor.id))
    return sorted((w for w in found if w is not None), key=lambda w: w.name)


@router.post("/workspaces", response_model=Workspace, status_code=status.HTTP_201_CREATED)
def create_workspace(body: WorkspaceCreate, caller: Caller = Depends(require_admin),
                     ctx: ServiceContext = Depends(get_ctx)):
    assert caller.actor is not None
    ws = ctx.store.create_workspace(Workspace(name=body.name, created=ctx.clock.now()))
    ctx.store.set_membership(Membership(workspace_id=ws.id, actor_id=caller.actor.id, role=Role.OWNER))
    return ws


class WorkspaceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    require_webhook_service_account: bool | None = None


@router.patch("/workspaces/{workspace}", response_model=Workspace)
def update_workspace_settings(body: WorkspaceSettings, access: Access = Depends(workspace_access)):
    """Workspace settings (admins): e.g. that every webhook must name a service account."""
    access.require(Permission.ADMIN)
    updated = access.workspace.model_copy(update=body.model_dump(exclude_none=True))
    access.ctx.store.update_workspace(updated)
    return updated


# --------------------------------------------------------------------------- own API keys


@router.post("/api_keys", response_model=IssuedKey, status_code=status.HTTP_201_CREATED)
def create_api_key(body: ApiKeyCreate, caller: Caller = Depends(require_actor), ctx: ServiceContext = Depends(get_ctx)):
    assert caller.actor is not None
    if caller.actor.kind is not ActorKind.USER:
        raise Forbidden("A service account's keys are issued with 'service-account rotate' by a workspace owner")
    return issue_key(ctx, caller.actor, body.name, body.expires_in_seconds)


@router.get("/api_keys", response_model=list[ApiKeyOut])
def list_api_keys(caller: Caller = Depends(require_actor), ctx: ServiceContext = Depends(get_ctx)):
    assert caller.actor is not None
    return [key_out(k) for k in ctx.store.list_api_keys(caller.actor.id)]


@router.delete("/api_keys/{key_id}", response_model=ApiKeyOut)
def revoke_api_key(key_id: str, caller: Caller = Depends(require_actor), ctx: ServiceContext = Depends(get_ctx)):
    assert caller.actor is not None
    key = ctx.store.get_api_key(key_id)
    if key is None or (key.actor_id != caller.actor.id and not caller.actor.is_admin):
        raise NotFound("API key not found")
    if key.revoked_at is None:
        key = key.model_copy(update={"revoked_at": ctx.clock.now()})
        ctx.store.update_api_key(key)
    return key_out(key)


# --------------------------------------------------------------------------- service accounts


def _service_account(ctx: ServiceContext, access: Access, account_id: str) -> Actor:
    account = ctx.store.get_actor(account_id)
    if account is None or account.workspace_id != access.workspace_id:
        raise NotFound("Service account not found")
    return account


@router.post("/workspaces/{workspace}/service_accounts", response_model=ServiceAccountIssued,
             status_code=status.HTTP_201_CREATED, tags=["service accounts"])
def create_service_account(body: ServiceAccountCreate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.ADMIN)
    if any(a.name == body.name for a in ctx.store.list_service_accounts(access.workspace_id)):
        raise AlreadyExists(f"Service account {body.name!r} already exists")
    account = ctx.store.create_actor(Actor(kind=ActorKind.SERVICE_ACCOUNT, name=body.name,
                                           workspace_id=access.workspace_id, created=ctx.clock.now()))
    ctx.store.set_membership(Membership(workspace_id=access.workspace_id, actor_id=account.id, role=body.role))
    issued = issue_key(ctx, account, "initial", body.expires_in_seconds)
    return ServiceAccountIssued(account=actor_out(account), role=body.role, key=issued.key, api_key=issued.api_key)


@router.get("/workspaces/{workspace}/service_accounts", response_model=list[ServiceAccountOut],
            tags=["service accounts"])
def list_service_accounts(access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.ADMIN)
    out = []
    for account in ctx.store.list_service_accounts(access.workspace_id):
        membership = ctx.store.get_membership(access.workspace_id, account.id)
        out.append(ServiceAccountOut(account=actor_out(account), role=membership.role if membership else None,
                                     keys=[key_out(k) for k in ctx.store.list_api_keys(account.id)]))
    return out


@router.post("/workspaces/{workspace}/service_accounts/{account_id}/rotate", response_model=ServiceAccountIssued,
             tags=["service accounts"])
def rotate_service_account(account_id: str, expires_in_seconds: int | None = Query(default=None, gt=0, le=TEN_YEARS),
                           access: Access = Depends(workspace_access)):
    """Issue a new key and revoke every older one."""
    ctx = access.ctx
    access.require(Permission.ADMIN)
    account = _service_account(ctx, access, account_id)
    now = ctx.clock.now()
    for key in ctx.store.list_api_keys(account.id):
        if key.revoked_at is None:
            ctx.store.update_api_key(key.model_copy(update={"revoked_at": now}))
    issued = issue_key(ctx, account, "rotated", expires_in_seconds)
    membership = ctx.store.get_membership(access.workspace_id, account.id)
    assert membership is not None
    return ServiceAccountIssued(account=actor_out(account), role=membership.role, key=issued.key,
                                api_key=issued.api_key)


@router.delete("/workspaces/{workspace}/service_accounts/{account_id}", status_code=status.HTTP_204_NO_CONTENT,
               tags=["service accounts"])
def delete_service_account(account_id: str, access: Access = Depends(workspace_access)) -> None:
    ctx = access.ctx
    access.require(Permission.ADMIN)
    ctx.store.delete_actor(_service_account(ctx, access, account_id).id)
