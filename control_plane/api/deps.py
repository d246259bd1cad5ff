"""Authentication and workspace access for API routes.

``Authorization: Bearer <key>`` carries a user key (``ppu_``), a service-account key
(``ppb_``) or a run token (``ppr_``). Every failure is the same 401 "Invalid
authentication credentials" (with a machine-readable ``reason``). A workspace the
caller is not a member of is a 404, exactly like one that does not exist; a role
without the permission is a 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from pushpool.control_plane.errors import Forbidden, NotFound, Unauthorized
from pushpool.control_plane.models import Actor, ApiKey, FlowRun, Role, Workspace
from pushpool.control_plane.services import keys
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission


async def get_ctx(request: Request) -> ServiceContext:
    # async: no I/O here, and FastAPI runs a sync dependency in its thread pool (a hop per dependency)
    return request.app.state.ctx


@dataclass(frozen=True)
class Caller:
    actor: Actor | None = None
    key: ApiKey | None = None
    #: Set when the caller is a container holding a run token.
    run: FlowRun | None = None

    @property
    def is_run_token(self) -> bool:
        return self.run is not None


def authenticate(request: Request, ctx: ServiceContext = Depends(get_ctx)) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing")
    return authenticate_token(ctx, token)


def authenticate_token(ctx: ServiceContext, token: str) -> Caller:
    """The caller a key or run token stands for (401 with the reason otherwise)."""
    now = ctx.clock.now()
    if token.startswith(keys.RUN_TOKEN_PREFIX):
        run_id = keys.run_id_of_token(token)
        stored = ctx.store.get_run_token(run_id) if run_id else None
        if stored is None or not keys.secrets_match(token, stored[0]):
            raise Unauthorized("unknown")
        if stored[1] <= now:
            raise Unauthorized("expired")
        run = ctx.store.get_flow_run(None, run_id)
        if run is None:
            raise Unauthorized("unknown")
        return Caller(run=run)
    if not token.startswith((keys.USER_PREFIX, keys.SERVICE_ACCOUNT_PREFIX)):
        raise Unauthorized("malformed")
    return caller_for_key_hash(ctx, keys.hash_secret(token))


def caller_for_key_hash(ctx: ServiceContext, key_hash: str) -> Caller:
    """The person or service account whose key has ``key_hash``, while the key is neither revoked nor expired
    (also how a dashboard session finds its caller on every request)."""
    now = ctx.clock.now()
    key = ctx.store.get_api_key_by_hash(key_hash)
    if key is None:
        raise Unauthorized("unknown")
    if key.revoked_at is not None:
        raise Unauthorized("revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("expired")
    actor = ctx.store.get_actor(key.actor_id)
    if actor is None:
        raise Unauthorized("unknown")
    return Caller(actor=actor, key=key)


async def require_actor(caller: Caller = Depends(authenticate)) -> Caller:
    """Routes that only a person or service account may call (never a run token)."""
    if caller.actor is None:
        raise Forbidden("A run token cannot call this endpoint")
    return caller


async def require_admin(caller: Caller = Depends(require_actor)) -> Caller:
    if not caller.actor or not caller.actor.is_admin:
        raise Forbidden("Only an instance administrator can do this")
    return caller


@dataclass(frozen=True)
class Access:
    """A caller's access to one workspace."""

    caller: Caller
    workspace: Workspace
    role: Role | None
    permissions: frozenset[Permission]
    #: The services, so a route needs no second dependency for them (each one costs FastAPI work).
    ctx: ServiceContext

    @property
    def workspace_id(self) -> str:
        return self.workspace.id

    def require(self, permission: Permission) -> None:
        if self.caller.is_run_token:
            raise Forbidden("A run token can only read and report its own flow run")
        if permission not in self.permissions:
            role = self.role.value if self.role else "none"
            raise Forbidden(f"Your role in workspace {self.workspace.name!r} ({role}) "
                            f"lacks the {permission.value!r} permission")

    def require_unless_run_token(self, permission: Permission) -> None:
        """For the few routes a run's token may also call (the route keeps it to what it may touch): anyone else
        needs ``permission``."""
        if not self.caller.is_run_token:
            self.require(permission)

    def require_run(self, run_id: str, permission: Permission = Permission.READ) -> None:
        """Access to one flow run: its own run for a run token, the permission otherwise."""
        if self.caller.run is not None:
            if self.caller.run.id != run_id:
                raise NotFound("Flow run not found")
            return
        self.require(permission)


async def workspace_access(request: Request, workspace: str = Path(description="Workspace name or id")) -> Access:
    # Runs on the event loop, not in the thread pool: four indexed reads by primary key (about
    # 25 µs on SQLite, where readers never wait for writers) cost less than the hop to a worker
    # thread and back that a sync dependency costs on every request. On Lambda (DynamoDB) an
    # invocation serves one request, so nothing else waits. Writes never happen here. A store whose reads
    # are network calls among many concurrent requests (PostgreSQL) says so, and they go to the thread pool.
    ctx: ServiceContext = request.app.state.ctx
    if not getattr(ctx.store, "reads_on_event_loop", True):
        return await run_in_threadpool(lambda: access_for(ctx, authenticate(request, ctx), workspace))
    return access_for(ctx, authenticate(request, ctx), workspace)


def access_for(ctx: ServiceContext, caller: Caller, workspace: str) -> Access:
    """``caller``'s access to ``workspace`` (name or id): 404 when it is not a member, as when it does not exist."""
    ws = ctx.store.get_workspace(workspace)
    if ws is None:
        raise NotFound(f"Workspace {workspace!r} not found")
    if caller.run is not None:
        if caller.run.workspace_id != ws.id:
            raise NotFound(f"Workspace {workspace!r} not found")
        return Access(caller, ws, None, frozenset(), ctx)
    assert caller.actor is not None
    membership = ctx.store.get_membership(ws.id, caller.actor.id)
    if membership is None:
        raise NotFound(f"Workspace {workspace!r} not found")
    return Access(caller, ws, membership.role, keys.ROLE_PERMISSIONS[membership.role], ctx)
