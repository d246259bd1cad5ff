"""``pushpool.yaml``: deployments declared in a file, for ``pushpool deploy``.

The file is validated strictly (a mistyped key is an error that suggests the right
one), ``{{ $ENV_VAR }}`` placeholders in string values are filled from the
environment, and each entry becomes the same :class:`~sdk.deployments.RunnerDeployment`
the Python path builds, so both create identical deployments.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pushpool.control_plane.api.schemas import ScheduleIn
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.event_models import DeploymentTrigger
from pushpool.control_plane.models import CollisionStrategy, Overlap
from pushpool.deployments import RunnerDeployment, catch_up_policy
from pushpool.flows import Flow
from pushpool.images import DockerImage
from pushpool.runner import EntrypointError, load_entrypoint

DEFAULT_FILE = "pushpool.yaml"
ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkPoolSpec(Spec):
    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class ImageSpec(Spec):
    """An image built by ``pushpool deploy`` (the fields of :class:`sdk.images.DockerImage`)."""

    name: str
    tag: str | None = None
    platform: str = "linux/amd64"
    dockerfile: str = "auto"
    base_image: str | None = None
    backend: str = "auto"
    build_args: dict[str, str] = Field(default_factory=dict)

    def to_image(self) -> DockerImage:
        extra = {"buildargs": self.build_args} if self.build_args else {}
        return DockerImage(self.name, tag=self.tag, platform=self.platform, dockerfile=self.dockerfile,
                           base_image=self.base_image, backend=self.backend, **extra)


class DeploymentSpec(Spec):
    name: str
    entrypoint: str
    work_pool: WorkPoolSpec
    description: str | None = None
    version: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleIn] = Field(default_factory=list)  # the API's own schedule schema
    concurrency_limit: int | None = None
    #: ENQUEUE (wait for a slot, the default) or CANCEL_NEW, when the deployment is at its limit.
    collision_strategy: CollisionStrategy | None = None
    crash_retries: int | None = Field(default=None, ge=0, le=10)
    #: allow, skip, buffer_one or cancel_other (docs/backfills.md).
    overlap: Overlap | None = None
    #: all, latest, none or within:<seconds> (docs/backfills.md).
    catch_up: str | None = None
    #: An existing image (a string), or one to build and push (a mapping).
    image: str | ImageSpec | None = None
    paused: bool = False

    @field_validator("catch_up")
    @classmethod
    def _known_catch_up(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                catch_up_policy(value)
            except InvalidInput as exc:
                raise ValueError(str(exc)) from None
        return value
    #: Automations that run this deployment (see docs/automations.md).
    triggers: list[DeploymentTrigger] = Field(default_factory=list)


class ProjectFile(Spec):
    deployments: list[DeploymentSpec]


def _model_at(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = ProjectFile
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        inner = getattr(annotation, "__args__", (annotation,))
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            break
        model = nested
    return model


def _describe(error: dict) -> str:
    loc = error["loc"]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        known = list(_model_at(loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(known)})"
        return f"{path}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{path}: required"
    return f"{path}: {error['msg']}"


def expand_env(value: Any, where: str = "") -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise InvalidInput(f"{where or 'value'}: environment variable {name} is not set")
            return os.environ[name]
        return ENV_PLACEHOLDER.sub(replace, value)
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_project_file(path: Path) -> ProjectFile:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"{path}: not found; create one with 'pushpool init'") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path}: expected a mapping with a 'deployments' list")
    try:
        return ProjectFile.model_validate(expand_env(raw))
    except ValidationError as exc:
        raise InvalidInput(f"{path.name}: {_describe(exc.errors()[0])}") from None


def to_runner_deployment(spec: DeploymentSpec, root: Path) -> RunnerDeployment:
    try:
        target = load_entrypoint(spec.entrypoint, root)
    except EntrypointError as exc:
        raise InvalidInput(f"deployments[{spec.name}].entrypoint: {exc}") from None
    flow = target if isinstance(target, Flow) else Flow(target)
    if isinstance(spec.image, ImageSpec):
        try:
            image: str | DockerImage | None = spec.image.to_image()
        except InvalidInput as exc:
            raise InvalidInput(f"deployments[{spec.name}].{exc}") from None
    else:
        image = spec.image
    schedules = [s.model_dump(mode="json", exclude_none=True) for s in spec.schedules]
    return RunnerDeployment(
        flow_name=flow.name, name=spec.name, entrypoint=spec.entrypoint, project_root=root,
        parameter_schema=flow.parameter_schema(), work_pool_name=spec.work_pool.name,
        work_queue_name=spec.work_pool.work_queue_name,
        image=image, parameters=spec.parameters,
        job_variables=spec.work_pool.job_variables, schedules=schedules, tags=spec.tags,
        description=spec.description or flow.description, version=spec.version,
        concurrency_limit=spec.concurrency_limit, collision_strategy=spec.collision_strategy,
        crash_retries=spec.crash_retries, paused=spec.paused,
        triggers=spec.triggers, overlap=spec.overlap.value if spec.overlap else None, catch_up=spec.catch_up,
    )


STARTER = """\
# pushpool.yaml: deployments of this project. Apply with `pushpool deploy --all`.
# String values may use {{ $ENV_VAR }} to take a value from the environment.
deployments:
  - name: daily                          # the deployment is <flow name>/daily
    entrypoint: flows/hello.py:hello     # path relative to this file : function
    description: Say hello every morning
    version: "1"
    tags: [example]
    parameters:                          # defaults for every run
      name: world
    schedules:
      - cron: "0 9 * * *"
        timezone: Europe/London
        # parameters: {name: morning}    # per-schedule parameters
      # - interval: 3600                 # seconds; add anchor_date to align
      # - rrule: "FREQ=WEEKLY;BYDAY=MO"
    # concurrency_limit: 1
    work_pool:
      name: local                        # create it: pushpool work-pool create local --type local:push
      # work_queue_name: default
      job_variables: {}
        # env: {API_TOKEN: "{{ $API_TOKEN }}"}
"""
