"""Deploying flows from Python: ``flow.to_deployment``, ``flow.deploy``, ``deploy(*deployments)``.

A deployment's entrypoint is the flow's source file relative to the project root
(the working directory when the file is under it, else the file's directory) plus
the function name, e.g. ``flows/etl.py:nightly``. Deploying again updates the
deployment in place; when its schedules change, its future auto-scheduled runs
are replaced.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pushpool.client import PushpoolClient
from pushpool.control_plane.errors import InvalidInput, PushpoolError
from pushpool.control_plane.event_models import DeploymentTrigger
from pushpool.control_plane.models import CollisionStrategy
from pushpool.images import DockerImage, resolve_images
from pushpool.schedules import Schedule, schedules_to_api

if TYPE_CHECKING:
    from pushpool.flows import Flow


def project_root_for(source: Path) -> Path:
    cwd = Path.cwd().resolve()
    return cwd if source.resolve().is_relative_to(cwd) else source.resolve().parent


def entrypoint_of(flow: Flow) -> tuple[str, Path]:
    """``relative/path.py:function`` and the project root it is relative to."""
    try:
        source = Path(inspect.getsourcefile(flow.fn) or "")
    except TypeError:
        source = Path("")
    if not source.name or not source.exists():
        raise InvalidInput(f"entrypoint: cannot find the source file of flow {flow.name!r}; "
                           "flows must be defined in a .py file to be deployed")
    root = project_root_for(source)
    return f"{source.resolve().relative_to(root).as_posix()}:{flow.fn.__name__}", root


@dataclass
class RunnerDeployment:
    """A deployment described in Python, ready to apply."""

    flow_name: str
    name: str
    entrypoint: str
    project_root: Path
    parameter_schema: dict[str, Any]
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    image: str | DockerImage | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    job_variables: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    version: str | None = None
    concurrency_limit: int | None = None
    #: What a run does when the deployment is at its concurrency limit: ``ENQUEUE`` (wait, the server's
    #: default) or ``CANCEL_NEW``.
    collision_strategy: str | None = None
    #: Times a run whose infrastructure crashed is submitted again (None: the pool's ``crash_retries``).
    crash_retries: int | None = None
    #: What a run due while the previous one is still active does: ``allow`` (default), ``skip``, ``buffer_one``,
    #: ``cancel_other`` (docs/backfills.md).
    overlap: str | None = None
    #: What happens to runs missed while the control plane or the pool was down: ``all``, ``latest``, ``none`` or
    #: ``within:<seconds>`` (None: the pool's late-run policy).
    catch_up: str | None = None
    paused: bool = False
    #: Automations that run this deployment (replaced on every deploy; an empty list removes them).
    triggers: list[DeploymentTrigger] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    def body(self, image: str | None, pool_type: str | None) -> dict[str, Any]:
        job_variables = dict(self.job_variables)
        if pool_type == "local:push":
            job_variables.setdefault("working_dir", str(self.project_root))
        extra: dict[str, Any] = {"collision_strategy": self.collision_strategy} if self.collision_strategy else {}
        if self.crash_retries is not None:
            extra["crash_retries"] = self.crash_retries
        if self.overlap is not None:
            extra["overlap"] = self.overlap
        if self.catch_up is not None:
            extra["late_run_policy"] = catch_up_policy(self.catch_up)
        return {
            **extra, "flow_name": self.flow_name, "name": self.name, "entrypoint": self.entrypoint,
            "work_pool_name": self.work_pool_name, "work_queue_name": self.work_queue_name, "image": image,
            "parameters": self.parameters, "parameter_schema": self.parameter_schema,
            "job_variables": job_variables, "schedules": self.schedules, "tags": self.tags,
            "description": self.description, "version": self.version,
            "concurrency_limit": self.concurrency_limit, "paused": self.paused,
        }

    def pool_type(self, client: PushpoolClient) -> str:
        """The type of this deployment's work pool; a clear error when it has none or it does not exist."""
        if not self.work_pool_name:
            raise InvalidInput(f"work_pool_name: deployment {self.full_name!r} needs a work pool")
        pool = client.read_work_pool_or_none(self.work_pool_name)
        if pool is None:
            raise InvalidInput(f"work_pool_name: work pool {self.work_pool_name!r} does not exist; create it "
                               f"with 'pushpool work-pool create {self.work_pool_name} --type local:push'")
        return pool["type"]

    def backfill(self, start: datetime, end: datetime, **options: Any) -> dict[str, Any]:
        """Run this (applied) deployment's schedule over ``[start, end]``: :func:`pushpool.backfills.backfill`."""
        from pushpool.backfills import backfill

        return backfill(self.full_name, start, end, **options)

    def apply(self, client: PushpoolClient | None = None, *, build: bool = True, push: bool = True) -> dict[str, Any]:
        """Create or update this deployment (building and pushing its DockerImage first); returns it as the
        API does."""
        return deploy(self, build=build, push=push, client=client)[0]


def to_deployment(flow: Flow, name: str, *, work_pool_name: str | None = None, work_queue_name: str | None = None,
                  image: str | DockerImage | None = None, cron: str | None = None,
                  interval: float | timedelta | None = None, rrule: str | None = None,
                  schedules: list[Schedule | dict] | None = None, parameters: dict[str, Any] | None = None,
                  job_variables: dict[str, Any] | None = None, tags: list[str] | None = None,
                  description: str | None = None, version: str | None = None,
                  concurrency_limit: int | None = None, collision_strategy: str | None = None,
                  crash_retries: int | None = None, paused: bool = False,
                  triggers: list[DeploymentTrigger | dict] | None = None, overlap: str | None = None,
                  catch_up: str | None = None) -> RunnerDeployment:
    if catch_up is not None:
        catch_up_policy(catch_up)  # a bad value fails here, naming the field, not at apply time
    entrypoint, root = entrypoint_of(flow)
    return RunnerDeployment(
        flow_name=flow.name, name=name, entrypoint=entrypoint, project_root=root,
        parameter_schema=flow.parameter_schema(), work_pool_name=work_pool_name, work_queue_name=work_queue_name,
        image=image, parameters=dict(parameters or {}), job_variables=dict(job_variables or {}),
        schedules=schedules_to_api(cron, interval, rrule, schedules), tags=list(tags or []),
        description=description or flow.description, version=version, concurrency_limit=concurrency_limit,
        collision_strategy=collision_strategy_value(collision_strategy), crash_retries=crash_retries, paused=paused,
        triggers=as_triggers(triggers), overlap=overlap, catch_up=catch_up,
    )


def catch_up_policy(value: str, field: str = "catch_up") -> dict[str, Any] | None:
    """``all``, ``latest``, ``none`` or ``within:<seconds>`` as the late-run policy the API keeps (``pool``: None,
    the pool's own)."""
    text = value.strip().lower()
    simple = {"all": {"mode": "run_all"}, "latest": {"mode": "latest_only"},
              "none": {"mode": "skip_late", "skip_after_seconds": 0}, "pool": None}
    if text in simple:
        return simple[text]
    kind, _, seconds = text.partition(":")
    if kind == "within" and seconds.isdigit():
        return {"mode": "skip_late", "skip_after_seconds": int(seconds)}
    raise InvalidInput(f"{field}: {value!r} is not all, latest, none, within:<seconds> or pool")


def collision_strategy_value(value: str | None, field: str = "collision_strategy") -> str | None:
    """``value`` as the API spells a collision strategy (any case, or the enum); the error names ``field``."""
    if value is None:
        return None
    try:
        return CollisionStrategy(str(getattr(value, "value", value)).upper()).value
    except ValueError:
        choices = ", ".join(c.value for c in CollisionStrategy)
        raise InvalidInput(f"{field}: {value!r} is not one of {choices}") from None


def as_triggers(triggers: list[DeploymentTrigger | dict] | None) -> list[DeploymentTrigger]:
    out = []
    for index, trigger in enumerate(triggers or []):
        try:
            out.append(trigger if isinstance(trigger, DeploymentTrigger) else DeploymentTrigger.model_validate(trigger))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidInput(f"triggers[{index}].{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return out


def _naming(deployment: RunnerDeployment, call: Callable[[], Any]) -> Any:
    """``call()``; a pushpool error it raises names the deployment it is about (``deploy --all`` applies many)."""
    try:
        return call()
    except PushpoolError as exc:
        if not exc.message.startswith(f"{deployment.full_name}: "):
            exc.message = f"{deployment.full_name}: {exc.message}"
            exc.args = (exc.message,)
        raise


def without_docker(client: PushpoolClient, deployments: list[RunnerDeployment], pool_types: list[str], *,
                   build: bool, quiet: bool) -> list[RunnerDeployment]:
    """Deployments to a ``coiled:push`` pool with no image, container or software: their project becomes a Coiled
    software environment (made once per project and pool workspace), recorded as the ``software`` variable."""
    made: dict[tuple[Any, ...], dict[str, Any]] = {}
    out = []
    for d, pool_type in zip(deployments, pool_types, strict=True):
        variables = d.job_variables
        if pool_type != "coiled:push" or d.image is not None or not build or variables.get("software") \
                or variables.get("container"):
            out.append(d)
            continue
        from pushpool.coiled_software import software_job_variables
        from pushpool.images.progress import BuildProgress

        key = (d.project_root.resolve(), d.work_pool_name, variables.get("workspace"), bool(variables.get("arm")),
               bool(variables.get("gpu")))
        if key not in made:
            with BuildProgress(quiet) as progress:
                made[key] = software_job_variables(client, client.read_work_pool(d.work_pool_name), d.project_root,
                                                   variables, say=progress.step)
        out.append(replace(d, job_variables={**variables, "software": made[key]["software"]}))
    return out


def deploy(*deployments: RunnerDeployment, work_pool_name: str | None = None,
           image: str | DockerImage | None = None, build: bool = True, push: bool = True,
           client: PushpoolClient | None = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Apply several deployments, sharing one work pool and one image when given. Every work pool is
    checked before anything is built; each distinct image is built and pushed once, then recorded on
    its deployments by digest."""
    if not deployments:
        raise InvalidInput("deployments: give at least one deployment (flow.to_deployment(...))")
    owned = client is None
    client = client or PushpoolClient()
    try:
        ready = [replace(d, work_pool_name=d.work_pool_name or work_pool_name, image=d.image or image)
                 for d in deployments]
        pool_types = [_naming(d, lambda d=d: d.pool_type(client)) for d in ready]
        ready = without_docker(client, ready, pool_types, build=build, quiet=quiet)
        images = resolve_images([(d.image, d.project_root) for d in ready], build, push, quiet=quiet)
        applied = []
        for d, reference, pool_type in zip(ready, images, pool_types, strict=True):
            deployment = _naming(d, lambda d=d, r=reference, t=pool_type: client.apply_deployment(**d.body(r, t)))
            client.request("PUT", client.ws(f"/deployments/{deployment['id']}/triggers"),
                           json=[t.model_dump(mode="json", exclude_none=True) for t in d.triggers])
            applied.append(deployment)
        return applied
    finally:
        if owned:
            client.close()
