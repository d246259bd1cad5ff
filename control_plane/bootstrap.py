"""First-start bootstrap: a ``default`` workspace and an owner key for the local user."""

from __future__ import annotations

from pushpool.control_plane.api.identity import issue_key
from pushpool.control_plane.errors import AlreadyExists, ConfigurationError
from pushpool.control_plane.models import Actor, ActorKind, Membership, Role, Workspace
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.crypto import key_check

DEFAULT_WORKSPACE = "default"


def bootstrap(ctx: ServiceContext, user_name: str = "admin") -> tuple[str, str] | None:
    """Create the first workspace and an admin owner with a key, if the store is empty.

    Returns ``(workspace name, clear key)`` when it created them, else ``None``.
    """
    if ctx.store.list_workspaces():
        return None
    now = ctx.clock.now()
    try:
        workspace = ctx.store.create_workspace(Workspace(name=DEFAULT_WORKSPACE, created=now))
    except AlreadyExists:
        return None  # another replica of a shared store bootstrapped it first (its log shows the key)
    admin = ctx.store.create_actor(Actor(kind=ActorKind.USER, name=user_name, is_admin=True, created=now))
    ctx.store.set_membership(Membership(workspace_id=workspace.id, actor_id=admin.id, role=Role.OWNER))
    return workspace.name, issue_key(ctx, admin, "bootstrap").key


#: What ``check_shared_key`` keeps in the store: a digest of a key derived from the cipher, never the key.
KEY_CHECK = "cipher_check"


def check_shared_key(ctx: ServiceContext) -> None:
    """Replicas of a shared store must all hold the key that encrypted its blocks and signs its run tokens: the
    first one records a digest of a key derived from it, and a replica with another key refuses to start."""
    mine = key_check(ctx.cipher)
    if ctx.store.set_meta_once(KEY_CHECK, mine) != mine:
        raise ConfigurationError(
            "this replica's encryption key is not the one the shared store's blocks were encrypted with: give "
            "every replica the same PUSHPOOL_ENCRYPTION_KEY (or the same PUSHPOOL_KMS_KEY_ID)")
