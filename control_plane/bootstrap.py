"""First-start bootstrap: a ``default`` workspace and an owner key for the local user."""

from __future__ import annotations

from pushpool.control_plane.api.identity import issue_key
from pushpool.control_plane.models import Actor, ActorKind, Membership, Role, Workspace
from pushpool.control_plane.services.context import ServiceContext

DEFAULT_WORKSPACE = "default"


def bootstrap(ctx: ServiceContext, user_name: str = "admin") -> tuple[str, str] | None:
    """Create the first workspace and an admin owner with a key, if the store is empty.

    Returns ``(workspace name, clear key)`` when it created them, else ``None``.
    """
    if ctx.store.list_workspaces():
        return None
    now = ctx.clock.now()
    workspace = ctx.store.create_workspace(Workspace(name=DEFAULT_WORKSPACE, created=now))
    admin = ctx.store.create_actor(Actor(kind=ActorKind.USER, name=user_name, is_admin=True, created=now))
    ctx.store.set_membership(Membership(workspace_id=workspace.id, actor_id=admin.id, role=Role.OWNER))
    return workspace.name, issue_key(ctx, admin, "bootstrap").key
