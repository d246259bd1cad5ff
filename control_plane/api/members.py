"""Users of the instance and the members of a workspace: who may do what where.

Instance administrators create users (each gets a first key, shown once) and see them all;
a workspace's owners add users to it by name or id, change roles and remove members. The
members list is readable by every member (names and roles, never keys). A workspace always
keeps at least one owner, and a service account leaves its workspace only by being deleted.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from pushpool.control_plane.api.deps import Access, Caller, get_ctx, require_admin, workspace_access
from pushpool.control_plane.api.identity import actor_out, issue_key
from pushpool.control_plane.api.schemas import ActorOut, IssuedKey, MemberAdd, MemberOut, MembershipSet, UserCreate
from pushpool.control_plane.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from pushpool.control_plane.models import Actor, ActorKind, Membership, Role
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api", tags=["members"])


@router.get("/users", response_model=list[ActorOut])
def list_users(_: Caller = Depends(require_admin), ctx: ServiceContext = Depends(get_ctx)):
    """Every user of the instance, by name (instance administrators)."""
    return [actor_out(u) for u in sorted(ctx.store.list_users(), key=lambda u: (u.name, u.id))]


@router.post("/users", response_model=IssuedKey, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, _: Caller = Depends(require_admin), ctx: ServiceContext = Depends(get_ctx)):
    """A new user and their first API key (shown once); optionally a member of one workspace already."""
    ws = None
    if body.workspace is not None:
        ws = ctx.store.get_workspace(body.workspace)
        if ws is None:
            raise InvalidInput(f"workspace: workspace {body.workspace!r} does not exist")
    if any(u.name == body.name for u in ctx.store.list_users()):
        raise AlreadyExists(f"name: a user named {body.name!r} already exists")
    user = ctx.store.create_actor(Actor(kind=ActorKind.USER, name=body.name, is_admin=body.is_admin,
                                        created=ctx.clock.now()))
    if ws is not None:
        ctx.store.set_membership(Membership(workspace_id=ws.id, actor_id=user.id, role=body.role))
    return issue_key(ctx, user, "initial")


def _members(access: Access) -> list[tuple[Actor, Membership]]:
    found = []
    for membership in access.ctx.store.list_members(access.workspace_id):
        actor = access.ctx.store.get_actor(membership.actor_id)
        if actor is not None:
            found.append((actor, membership))
    return found


def _member(access: Access, actor_id: str) -> tuple[Actor, Membership]:
    actor = access.ctx.store.get_actor(actor_id)
    membership = access.ctx.store.get_membership(access.workspace_id, actor_id)
    if actor is None or membership is None:
        raise NotFound(f"No member {actor_id!r} in workspace {access.workspace.name!r}")
    return actor, membership


def _keep_an_owner(access: Access, leaving: Membership) -> None:
    """Refuse to take away the workspace's last owner (nobody could manage it any more)."""
    if leaving.role is not Role.OWNER:
        return
    owners = [m for m in access.ctx.store.list_members(access.workspace_id) if m.role is Role.OWNER]
    if [m.actor_id for m in owners] == [leaving.actor_id]:
        raise Conflict(f"This is the last owner of workspace {access.workspace.name!r}: make someone else owner "
                       "first")


@router.get("/workspaces/{workspace}/members", response_model=list[MemberOut])
def list_members(access: Access = Depends(workspace_access)):
    """Users and service accounts of the workspace with their roles (any member may look)."""
    access.require(Permission.READ)
    rows = sorted(_members(access), key=lambda pair: (pair[0].kind.value, pair[0].name, pair[0].id))
    return [MemberOut(actor=actor_out(actor), role=membership.role) for actor, membership in rows]


@router.post("/workspaces/{workspace}/members", response_model=MemberOut, status_code=status.HTTP_201_CREATED)
def add_member(body: MemberAdd, access: Access = Depends(workspace_access)):
    """Add an existing user, by name or id, with a role (owners). Service accounts are made in their workspace."""
    access.require(Permission.ADMIN)
    ctx = access.ctx
    by_id = ctx.store.get_actor(body.user)
    if by_id is not None and by_id.kind is ActorKind.USER:
        matches = [by_id]
    else:
        matches = [u for u in ctx.store.list_users() if u.name == body.user]
    if not matches:
        raise NotFound(f"user: no user named {body.user!r}; an instance administrator creates users "
                       "(pushpool user create)")
    if len(matches) > 1:
        raise Conflict(f"user: {len(matches)} users are named {body.user!r}; give the user's id instead")
    [user] = matches
    existing = ctx.store.get_membership(access.workspace_id, user.id)
    if existing is not None:
        raise AlreadyExists(f"user: {user.name!r} is already a member ({existing.role.value}); change the role "
                            "with 'pushpool member set-role'")
    ctx.store.set_membership(Membership(workspace_id=access.workspace_id, actor_id=user.id, role=body.role))
    return MemberOut(actor=actor_out(user), role=body.role)


@router.put("/workspaces/{workspace}/members/{actor_id}", status_code=status.HTTP_204_NO_CONTENT)
def set_member(actor_id: str, body: MembershipSet, access: Access = Depends(workspace_access)) -> None:
    """Set the role of a user or of one of this workspace's service accounts (adding a user by id)."""
    ctx = access.ctx
    access.require(Permission.ADMIN)
    actor = ctx.store.get_actor(actor_id)
    if actor is None or (actor.workspace_id is not None and actor.workspace_id != access.workspace_id):
        raise NotFound("User or service account not found")
    current = ctx.store.get_membership(access.workspace_id, actor_id)
    if current is not None and body.role is not Role.OWNER:
        _keep_an_owner(access, current)
    ctx.store.set_membership(Membership(workspace_id=access.workspace_id, actor_id=actor_id, role=body.role))


@router.delete("/workspaces/{workspace}/members/{actor_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(actor_id: str, access: Access = Depends(workspace_access)) -> None:
    """Take a user out of the workspace; their keys stop working here at once (and only here)."""
    access.require(Permission.ADMIN)
    actor, membership = _member(access, actor_id)
    if actor.kind is ActorKind.SERVICE_ACCOUNT:
        raise Conflict(f"{actor.name!r} is a service account of this workspace: delete it with "
                       "'pushpool service-account delete'")
    _keep_an_owner(access, membership)
    access.ctx.store.delete_membership(access.workspace_id, actor_id)
