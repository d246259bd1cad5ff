"""The provisioner protocol: plan → apply → destroy, idempotent.

Provisioners run on the user's machine with the user's own cloud login (never in
the control plane). The cloud modules (``aws``, ``gcp``, ``azure``, ``modal``) come
with their pool types' issues; this module fixes the shape they share.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pushpool.control_plane.errors import PushpoolError


class ProvisioningError(PushpoolError):
    """A provisioning step failed; the message names the step and, for a missing permission, the IAM action."""


class StepAction(StrEnum):
    CREATE = "create"
    EXISTS = "exists"   # found and reused
    SKIP = "skip"       # not needed here (e.g. a default VPC exists)
    CHECK = "check"     # after the changes: waits until what was made works (IAM propagation, a smoke call)


@dataclass(frozen=True)
class PlanStep:
    resource: str          # e.g. "IAM role pushpool-ecs-execution"
    action: StepAction
    detail: str = ""
    key: str = ""          # which part of the provisioner carries the step out


@dataclass
class Plan:
    pool_name: str
    steps: list[PlanStep] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def changes(self) -> list[PlanStep]:
        return [s for s in self.steps if s.action is StepAction.CREATE]


@dataclass
class ProvisionResult:
    #: Data for the pool's credentials block (type and fields), if one is created.
    credentials_block: dict[str, Any] | None = None
    #: Defaults written into the pool's base job template variables.
    job_variable_defaults: dict[str, Any] = field(default_factory=dict)
    #: Where images for this pool are pushed (set as the profile's default build namespace).
    registry_namespace: str | None = None
    #: What was created, kept in the pool's provisioning record so destroy removes exactly that.
    created: dict[str, Any] = field(default_factory=dict)
    #: One sentence for the user on what the pool's job template now points at.
    summary: str = ""


#: Called once per step as it completes: (step, index, total).
Progress = Callable[[PlanStep, int, int], None]

#: How long a provisioner waits for what it created to take effect (IAM and role assignments propagate in
#: seconds to minutes) before it says so and stops.
PROPAGATION_TIMEOUT = 300.0


def wait_until_it_works(what: str, attempt: Callable[[], Any], not_yet: Callable[[BaseException], bool], *,
                        timeout: float = PROPAGATION_TIMEOUT, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call ``attempt`` until it returns, waiting 1, 2, 4 … (at most 15) seconds after each failure that
    ``not_yet`` says is the cloud still propagating; any other failure, or ``timeout`` seconds of them, stops
    with a :class:`ProvisioningError` saying what did not start working."""
    deadline, delay = time.monotonic() + timeout, 1.0
    while True:
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - classified by not_yet
            if not not_yet(exc):
                if isinstance(exc, ProvisioningError):
                    raise
                raise ProvisioningError(f"{what} failed: {exc}") from exc
            if time.monotonic() + delay > deadline:
                raise ProvisioningError(f"{what} still fails after {timeout:.0f} s ({exc}); the cloud may need "
                                        "longer to propagate it: run the same command again") from exc
        sleep(delay)
        delay = min(delay * 2, 15.0)


class Provisioner(Protocol):
    def plan(self, pool_name: str, options: dict[str, Any]) -> Plan: ...
    def apply(self, plan: Plan, progress: Progress) -> ProvisionResult: ...
    def destroy(self, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None: ...


#: Pool type → "module:Class" of its provisioner, imported only when used.
PROVISIONER_TYPES: dict[str, str] = {
    "ecs:push": "pushpool.provisioners.aws:AwsProvisioner",
    "cloud-run:push": "pushpool.provisioners.gcp:GcpProvisioner",
    "azure-container-instance:push": "pushpool.provisioners.azure:AzureProvisioner",
    "modal:push": "pushpool.provisioners.modal:ModalProvisioner",
    "coiled:push": "pushpool.provisioners.coiled:CoiledProvisioner",
}

#: Pool type → (suffix of the credentials block's name, the job variable that references the block).
CREDENTIALS: dict[str, tuple[str, str]] = {
    "ecs:push": ("aws", "aws_credentials"),
    "cloud-run:push": ("gcp", "credentials"),
    "azure-container-instance:push": ("azure", "aci_credentials"),
    "modal:push": ("modal", "modal_credentials"),
    "coiled:push": ("coiled", "coiled_credentials"),
}


def credentials_block_name(pool_name: str, pool_type: str) -> str:
    """The credentials block a provisioner writes for a pool, e.g. ``etl-aws``."""
    suffix = CREDENTIALS.get(pool_type, ("credentials",))[0]
    return f"{pool_name}-{suffix}"


#: Pool types whose infrastructure needs nothing created.
NOTHING_TO_PROVISION = {"local:push"}


def provisioner_for(pool_type: str) -> Provisioner | None:
    """The pool type's provisioner, or None when the type needs none or none is available yet."""
    target = PROVISIONER_TYPES.get(pool_type)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, class_name)()
