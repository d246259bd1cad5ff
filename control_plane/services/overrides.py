"""Which job variables a run (as opposed to its deployment) may set, decided by the caller's role.

A deployment's variables are written by people who may write the workspace (owners, developers);
a run's by anyone who may start runs — a runner, a service account, an automation reacting to an
anonymous webhook. So:

* callers who may write the workspace may override any variable of a cloud pool for one run;
* everyone else may set only the variables the pool marks run-overridable
  (``run_overridable_variables``; by default the resource knobs in :data:`DEFAULT_RUN_OVERRIDABLE`),
  and never what decides the code or the identity a run has (:func:`is_protected`: the command, the
  image, credentials, roles, identities, networks);
* on a host pool (``local:push``) only an actor allowed to configure host runs
  (:mod:`control_plane.services.host_runs`) may go beyond the pool's run-overridable variables, which by
  default are only ``max_runtime_seconds`` and ``labels``.

Runs made by automations count as "everyone else".
"""

from __future__ import annotations

from typing import Any

from pushpool.control_plane.errors import Forbidden, InvalidInput
from pushpool.control_plane.models import Actor, WorkPool
from pushpool.control_plane.services.host_runs import is_host_pool
from pushpool.control_plane.settings import Settings

DEFAULT_RUN_OVERRIDABLE = frozenset({
    "cpu", "memory", "gpu", "gpu_count", "gpu_sku", "max_runtime_seconds", "timeout", "max_retries", "labels", "env",
})
DEFAULT_HOST_RUN_OVERRIDABLE = frozenset({"max_runtime_seconds", "labels"})
#: Never settable by a run of a caller who cannot write the workspace, whatever the pool says.
PROTECTED = frozenset({"command", "image", "working_dir", "entrypoint"})
#: Words in a variable's name that mark it as identity or network: also never run-overridable.
PROTECTED_WORDS = ("credential", "secret", "token", "password", "role", "identit", "service_account", "registry",
                   "subnet", "security_group", "vpc", "network", "dns", "public_ip", "cluster", "project",
                   "subscription", "resource_group", "task_definition", "family")


def is_protected(name: str, spec: Any = None) -> bool:
    """A variable that decides a run's code or identity (the command, image, credentials, roles, networks)."""
    if name in PROTECTED or any(word in name for word in PROTECTED_WORDS):
        return True
    return isinstance(spec, dict) and "pushpool\\.blocks" in str(spec.get("anyOf", ""))  # a block variable


def run_overridable(pool: WorkPool) -> set[str]:
    properties = pool.base_job_template.get("variables", {}).get("properties", {})
    if pool.run_overridable_variables is not None:
        wanted = set(pool.run_overridable_variables)
    else:
        wanted = DEFAULT_HOST_RUN_OVERRIDABLE if is_host_pool(pool.type) else DEFAULT_RUN_OVERRIDABLE
    return {name for name in wanted if name in properties and not is_protected(name, properties[name])}


def validate_run_overridable(template: dict[str, Any], names: list[str] | None) -> None:
    """A pool's ``run_overridable_variables``: variables of its template, none of them protected."""
    if names is None:
        return
    properties = template.get("variables", {}).get("properties", {})
    for name in names:
        if name not in properties:
            raise InvalidInput(f"run_overridable_variables: {name!r} is not a variable of this pool's template")
        if is_protected(name, properties[name]):
            raise InvalidInput(f"run_overridable_variables: {name!r} decides what a run executes or which identity "
                               "it has; only a deployment may set it")


def check_run_overrides(settings: Settings, pool: WorkPool, job_variables: dict[str, Any] | None, *,
                        may_write: bool, actor: Actor | None) -> None:
    """Raise Forbidden naming the first variable this caller may not set on a run."""
    if not job_variables:
        return
    if is_host_pool(pool.type):
        mode = settings.host_processes
        if (mode == "admins" and actor is not None and actor.is_admin) or (mode == "members" and may_write):
            return
    elif may_write:
        return
    allowed = run_overridable(pool)
    for name in sorted(job_variables):
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise Forbidden(f"job_variables.{name}: a run may not set this variable of work pool {pool.name!r} "
                            f"with your role (run-overridable here: {listed}); set it on the deployment instead")
