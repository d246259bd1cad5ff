"""Who may make the control plane start processes on its own machine (``local:push``), and what those see.

Host processes are an operator's choice, never a tenant's (docs/security.md):

* ``PUSHPOOL_HOST_PROCESSES=off`` (always on Lambda): no ``local:push`` pool can be created, and a run
  of one that exists is CRASHED by the dispatcher instead of started;
* ``admins`` (the default): only an instance administrator may create or change a ``local:push``
  pool or a deployment in one — what runs on the host is what an administrator wrote. Anyone with
  the ``run`` permission may still start such a deployment, with parameters, but cannot change
  what it runs (see :mod:`control_plane.services.overrides`);
* ``members``: anyone who may write deployments of the workspace (a one-team server).

In ``admins`` mode ``local:push`` templates and deployments may not reference blocks: a block is
editable by every developer of the workspace, so a host command or environment assembled from one
would escape the rule above. (In ``members`` mode whoever may edit a block may edit the deployment.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pushpool.control_plane.errors import Forbidden, InvalidInput
from pushpool.control_plane.models import Actor
from pushpool.control_plane.services.templating import BLOCK_PREFIX, placeholders_in
from pushpool.control_plane.settings import Settings
from pushpool.pushers.base import HostRunPolicy

#: Pool types whose runs are processes on the control plane's machine.
HOST_POOL_TYPES = frozenset({"local:push"})


def is_host_pool(pool_type: str) -> bool:
    return pool_type in HOST_POOL_TYPES


def host_run_policy(settings: Settings) -> HostRunPolicy:
    """The pusher's view of the settings: whether host runs may start, and what they must not see."""
    hidden = [settings.home, Path("~/.pushpool").expanduser(), *settings.host_hidden_paths]
    database = settings.sqlite_path
    if settings.home not in database.parents:
        hidden += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    unique = tuple(dict.fromkeys(p.expanduser().resolve() for p in hidden))
    return HostRunPolicy(allowed=settings.host_processes != "off", isolation=settings.host_isolation,
                         hidden_paths=unique, env_passthrough=tuple(settings.host_env_passthrough))


def check_may_configure(settings: Settings, actor: Actor | None, what: str) -> None:
    """Raise unless ``actor`` may create or change ``what`` (a ``local:push`` pool or a deployment in one)."""
    mode = settings.host_processes
    if mode == "off":
        raise InvalidInput(f"{what}: local:push is disabled on this server (PUSHPOOL_HOST_PROCESSES=off): "
                           "its runs would be processes on the control plane's own machine; use a cloud pool type")
    if mode == "admins" and not (actor is not None and actor.is_admin):
        raise Forbidden(f"Only an instance administrator may create or change {what}: its runs are processes on "
                        "the control plane's own machine (the operator allows others with "
                        "PUSHPOOL_HOST_PROCESSES=members)")


def blocks_allowed(settings: Settings) -> bool:
    """Whether ``local:push`` pools and deployments may take values from blocks (see the module doc)."""
    return settings.host_processes == "members"


def refuse_block_references(settings: Settings, value: Any, field: str) -> None:
    """In ``admins`` mode, ``local:push`` pools and deployments may not take anything from blocks."""
    if blocks_allowed(settings):
        return
    refs = sorted(n for n in placeholders_in(value) if n.startswith(BLOCK_PREFIX))
    if refs:
        raise InvalidInput(f"{field}: local:push may not reference blocks ({{{{ {refs[0]} }}}}): what runs on the "
                           "control plane's machine must not change when a developer edits a block; put the value "
                           "in the deployment (or run a one-team server with PUSHPOOL_HOST_PROCESSES=members)")
