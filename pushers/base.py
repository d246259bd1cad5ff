"""The pusher protocol, its errors, and the lazy registry keyed by pool type.

A pusher submits one rendered job to a compute target and afterwards answers
questions about it. It is plain synchronous code; the dispatcher and reconciler
call it from a bounded thread pool. Cloud SDKs are imported inside the pusher
module that needs them, never here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pushpool.control_plane.errors import InvalidInput, PushpoolError

#: The longest runtime limit a job may ask for (``max_runtime_seconds``).
MAX_RUNTIME_SECONDS = 366 * 86400


class PusherError(PushpoolError):
    """A pusher could not do what it was asked."""


class TransientPusherError(PusherError):
    """Throttling, capacity, 5xx: worth retrying with backoff."""


class ThrottledPusherError(TransientPusherError):
    """The cloud said: too many requests (a transient error of its own kind, so metrics can tell it apart)."""


class PermanentPusherError(PusherError):
    """Retrying will not help (missing cluster, access denied, bad image): the message says what to fix."""


@dataclass(frozen=True)
class Job:
    """Everything a pusher needs to start one flow run."""

    flow_run_id: str
    workspace_id: str
    pool_name: str
    deployment_name: str
    flow_run_name: str
    #: The pool's job template rendered for this run (blocks resolved).
    configuration: dict[str, Any]
    #: Environment for the container: the rendered ``env`` plus the PUSHPOOL_* run context.
    env: dict[str, str]
    image: str | None = None
    #: The deployment's command override; ``None`` means the pusher's runner command.
    command: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: 1 for the first submission of the run; more when a submission is retried or taken over.
    attempt: int = 1
    #: How often the run's infrastructure crashed before and the run was submitted again (``crash_retries``).
    crash_attempt: int = 0

    @property
    def idempotency_key(self) -> str:
        """What names the run's infrastructure and lets a resubmission adopt it instead of starting it twice.
        A crash retry is new infrastructure, so it has a key of its own (at most 40 characters)."""
        return self.flow_run_id if self.crash_attempt == 0 else f"{self.flow_run_id}-r{self.crash_attempt}"


@dataclass(frozen=True)
class Submission:
    infra_id: str
    console_url: str | None = None
    #: Where the run's log lines are in the cloud's own console, when that is another page.
    logs_url: str | None = None


@dataclass(frozen=True)
class LogPage:
    lines: list[str]
    #: Pass back to read on from here (follow mode); None when the pusher cannot continue.
    cursor: str | None = None


class InfraState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"


@dataclass(frozen=True)
class InfraStatus:
    state: InfraState
    exit_code: int | None = None
    #: For a failure: a sentence a person can act on ("killed, likely out of memory").
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in (InfraState.EXITED, InfraState.MISSING)


@dataclass(frozen=True)
class HostRunPolicy:
    """What the operator allows for processes started on the control plane's own machine (``local:push``)."""

    #: False on Lambda and with ``PUSHPOOL_HOST_PROCESSES=off``: nothing is ever started on the host.
    allowed: bool = True
    #: ``auto``, ``required`` or ``none`` (``PUSHPOOL_HOST_ISOLATION``; see pushers/local_sandbox.py).
    isolation: str = "auto"
    #: What a host run must not see: the server's home, database, key files, the CLI's profiles.
    hidden_paths: tuple[Path, ...] = ()
    #: Names of the server's environment variables a host run gets besides the minimal set.
    env_passthrough: tuple[str, ...] = ()


@dataclass(frozen=True)
class PusherContext:
    """What the control plane gives every pusher it creates."""

    state_dir: Path
    api_url: str
    #: The pool's job configuration rendered from its defaults (blocks resolved): what
    #: ``status``/``cancel``/``cleanup``/``logs`` use, e.g. the pool's cloud credentials.
    pool_config: dict[str, Any] = field(default_factory=dict)
    host_runs: HostRunPolicy = field(default_factory=HostRunPolicy)


class Pusher(Protocol):
    """Pushers may also offer ``logs(infra_id, tail=None, cursor=None) -> LogPage``."""

    def submit(self, job: Job) -> Submission: ...
    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]: ...
    def cancel(self, infra_id: str) -> None: ...
    def cleanup(self, infra_id: str) -> None: ...
    @classmethod
    def default_job_template(cls) -> dict[str, Any]: ...


#: Pool type → "module:Class"; modules are imported only when a pool of that type is used.
PUSHER_TYPES: dict[str, str] = {
    "local:push": "pushpool.pushers.local:LocalPusher",
    "ecs:push": "pushpool.pushers.ecs:EcsPusher",
    "cloud-run:push": "pushpool.pushers.cloud_run:CloudRunPusher",
    "azure-container-instance:push": "pushpool.pushers.aci:AciPusher",
    "modal:push": "pushpool.pushers.modal:ModalPusher",
    "coiled:push": "pushpool.pushers.coiled:CoiledPusher",
}


#: Pool type → "module:function" checking a run's job variables against the cloud's own rules (what the
#: variables' JSON schema cannot say, e.g. Fargate's cpu/memory pairs), so a deployment hears of a value the cloud
#: would refuse when it is saved, not at 3 a.m. The modules hold no cloud SDK.
JOB_VARIABLE_RULES: dict[str, str] = {
    "ecs:push": "pushpool.pushers.ecs_template:check_job_variables",
    "coiled:push": "pushpool.pushers.coiled_template:check_job_variables",
}


def check_job_variables(pool_type: str, values: dict[str, Any], explicit: dict[str, Any]) -> None:
    """Raise InvalidInput naming the variable when ``values`` (the merged job variables, defaults included) break
    a rule of the pool type's cloud; ``explicit`` are the values someone set (not the template's defaults)."""
    target = JOB_VARIABLE_RULES.get(pool_type)
    if target is not None:
        module_name, _, function = target.partition(":")
        getattr(importlib.import_module(module_name), function)(values, explicit)


def pusher_class(pool_type: str) -> type:
    target = PUSHER_TYPES.get(pool_type)
    if target is None:
        raise InvalidInput(f"type: unknown work pool type {pool_type!r}; known types: {', '.join(PUSHER_TYPES)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise InvalidInput(f"type: work pool type {pool_type!r} is not available in this release yet") from None
        extra = {"ecs:push": "aws", "cloud-run:push": "gcp", "azure-container-instance:push": "azure",
                 "modal:push": "modal", "coiled:push": "coiled"}.get(pool_type, "")
        raise InvalidInput(
            f"type: work pool type {pool_type!r} needs the '{extra}' extra: pip install 'pushpool[{extra}]'"
        ) from exc
    return getattr(module, class_name)


def job_image(job: Job) -> str:
    """The image a job runs (the deployment's, else the pool's 'image' variable); none is a permanent error."""
    image = job.image or job.configuration.get("image")
    if not image:
        raise PermanentPusherError("no image: give the deployment an image or set the pool's 'image' variable")
    return str(image)


T = TypeVar("T")


class ClientCache:
    """Cloud SDK clients made once per set of credentials and kept; keyed by a hash, so no secret is a key."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, identity: Any, make: Callable[[], T]) -> T:
        """The client for ``identity`` (anything JSON-able: credentials, endpoint, ...), made by ``make`` once."""
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            if key not in self._clients:
                self._clients[key] = make()
            return self._clients[key]


class PusherRegistry:
    """Creates one pusher per pool type and pool configuration on first use, and keeps it."""

    def __init__(self, context: PusherContext, overrides: dict[str, Pusher] | None = None) -> None:
        self.context = context
        self._overrides: dict[str, Pusher] = dict(overrides or {})
        self._pushers: dict[tuple[str, str], Pusher] = {}
        self._lock = threading.Lock()

    def get(self, pool_type: str, pool_config: dict[str, Any] | None = None) -> Pusher:
        if pool_type in self._overrides:
            return self._overrides[pool_type]
        key = (pool_type, json.dumps(pool_config or {}, sort_keys=True, default=str))
        with self._lock:
            if key not in self._pushers:
                context = replace(self.context, pool_config=dict(pool_config or {}))
                self._pushers[key] = pusher_class(pool_type)(context)
            return self._pushers[key]

    def register(self, pool_type: str, pusher: Pusher) -> None:
        with self._lock:
            self._overrides[pool_type] = pusher


def default_job_template(pool_type: str) -> dict[str, Any]:
    return pusher_class(pool_type).default_job_template()


def classify_exit_code(code: int) -> str:
    """A person-readable reason for a non-zero exit code (containers report signals as 128+N)."""
    if code in (137, -9):
        return "exit code 137: killed (SIGKILL), likely out of memory"
    if code in (143, -15):
        return "exit code 143: terminated (SIGTERM)"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
