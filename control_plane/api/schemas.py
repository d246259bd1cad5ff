"""Request and response bodies of the HTTP API (records that are safe to return are used as is)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from pushpool.control_plane.backfill_models import DEFAULT_MAX_ACTIVE, MAX_ACTIVE_LIMIT, Reprocess
from pushpool.control_plane.models import (
    TEN_YEARS_SECONDS,
    ActorKind,
    CollisionStrategy,
    LateRunPolicy,
    LogItem,
    Overlap,
    Role,
    StateType,
)

#: Names of pools, queues, workspaces, variables: what is safe in a URL path and a log line.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
NAME = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)

#: Bounds that keep client numbers inside what datetimes and SQLite integers can hold.
TEN_YEARS = TEN_YEARS_SECONDS
MAX_LIMIT = 1_000_000
MAX_PRIORITY = 1_000_000
#: Field size limits (the whole body is limited too: PUSHPOOL_MAX_BODY_BYTES).
MAX_DESCRIPTION = 10_000
MAX_OBJECT_BYTES = 256 * 1024


def _bounded_object(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value, default=str, separators=(",", ":"))) > MAX_OBJECT_BYTES:
        raise ValueError(f"is larger than {MAX_OBJECT_BYTES // 1024} KB as JSON")
    return value


#: A JSON object field of at most ``MAX_OBJECT_BYTES`` (parameters, job variables, templates, block data).
JsonObject = Annotated[dict[str, Any], AfterValidator(_bounded_object)]
Description = Annotated[str | None, Field(max_length=MAX_DESCRIPTION)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- identity


class WorkspaceCreate(Body):
    name: str = NAME


class UserCreate(Body):
    name: str = Field(min_length=1, max_length=100)
    is_admin: bool = False
    workspace: str | None = Field(default=None, description="Add the user to this workspace ...")
    role: Role = Field(default=Role.DEVELOPER, description="... with this role.")


class MembershipSet(Body):
    role: Role


class MemberAdd(Body):
    user: str = Field(min_length=1, max_length=100, description="The user's name or id.")
    role: Role = Role.DEVELOPER


class ApiKeyCreate(Body):
    name: str = Field(default="default", min_length=1, max_length=100)
    expires_in_seconds: int | None = Field(default=None, gt=0, le=TEN_YEARS)


class ServiceAccountCreate(Body):
    name: str = NAME
    role: Role = Role.RUNNER
    expires_in_seconds: int | None = Field(default=None, gt=0, le=TEN_YEARS)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    actor_id: str
    created: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedKey(BaseModel):
    """A freshly minted key: the only time its secret is shown."""

    key: str
    api_key: ApiKeyOut


class ActorOut(BaseModel):
    id: str
    kind: ActorKind
    name: str
    is_admin: bool
    workspace_id: str | None = None


class ServiceAccountOut(BaseModel):
    account: ActorOut
    role: Role | None
    keys: list[ApiKeyOut] = []


class ServiceAccountIssued(BaseModel):
    account: ActorOut
    role: Role
    key: str
    api_key: ApiKeyOut


class MemberOut(BaseModel):
    """Someone who belongs to a workspace: a user or one of its service accounts."""

    actor: ActorOut
    role: Role


class FlowSummary(BaseModel):
    """A flow, known by its deployments (flows are not registered on their own)."""

    name: str
    deployments: list[str]
    created: datetime
    updated: datetime


class MembershipOut(BaseModel):
    workspace_id: str
    workspace_name: str
    role: Role


class Me(BaseModel):
    kind: str
    actor: ActorOut | None = None
    api_key: ApiKeyOut | None = None
    memberships: list[MembershipOut] = []
    flow_run_id: str | None = None
    workspace_id: str | None = None


# --------------------------------------------------------------------------- pools and queues


class WorkPoolCreate(Body):
    name: str = NAME
    type: str
    description: Description = None
    base_job_template: JsonObject | None = None
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    paused: bool = False
    prefetch_seconds: int = Field(default=0, ge=0, le=3600)
    late_run_policy: LateRunPolicy | None = None
    run_overridable_variables: list[str] | None = Field(
        default=None, max_length=100, description="Job variables a run may set when its caller cannot write the "
        "workspace (default: the pool type's resource variables).")
    crash_retries: int = Field(default=0, ge=0, le=10)
    crash_retry_delay_seconds: int = Field(default=10, ge=0, le=3600)


class WorkPoolUpdate(Body):
    description: Description = None
    base_job_template: JsonObject | None = None
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    clear_concurrency_limit: bool = False
    paused: bool | None = None
    prefetch_seconds: int | None = Field(default=None, ge=0, le=3600)
    late_run_policy: LateRunPolicy | None = None
    run_overridable_variables: list[str] | None = Field(default=None, max_length=100)
    provisioning: dict[str, Any] | None = Field(default=None, description="What a provisioner created.")
    crash_retries: int | None = Field(default=None, ge=0, le=10)
    crash_retry_delay_seconds: int | None = Field(default=None, ge=0, le=3600)


class WorkQueueCreate(Body):
    name: str = NAME
    description: Description = None
    priority: int = Field(default=1, ge=1, le=MAX_PRIORITY)
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    paused: bool = False


class WorkQueueUpdate(Body):
    description: Description = None
    priority: int | None = Field(default=None, ge=1, le=MAX_PRIORITY)
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    clear_concurrency_limit: bool = False
    paused: bool | None = None


# --------------------------------------------------------------------------- blocks


class BlockCreate(Body):
    #: No dots: ``{{ pushpool.blocks.NAME.field }}`` must be unambiguous.
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    type: str
    data: JsonObject


class BlockUpdate(Body):
    data: JsonObject


class BlockOut(BaseModel):
    id: str
    name: str
    type: str
    data: JsonObject = Field(description="Secret fields are masked.")
    created: datetime
    updated: datetime


# --------------------------------------------------------------------------- deployments


class ScheduleIn(Body):
    id: str | None = Field(default=None, description="Keep this existing schedule's id (and its runs' lineage).")
    cron: str | None = None
    interval: float | None = Field(default=None, ge=1, le=TEN_YEARS, description="Interval in seconds.")
    anchor_date: datetime | None = None
    rrule: str | None = None
    timezone: str = "UTC"
    parameters: JsonObject = Field(default_factory=dict)
    active: bool = True
    slug: str | None = None


class DeploymentCreate(Body):
    flow_name: str = NAME
    name: str = NAME
    entrypoint: str = Field(min_length=3, pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$")
    work_pool_name: str
    work_queue_name: str | None = None
    image: str | None = None
    parameters: JsonObject = Field(default_factory=dict)
    parameter_schema: JsonObject | None = None
    job_variables: JsonObject = Field(default_factory=dict)
    schedules: list[ScheduleIn] = Field(default_factory=list)
    concurrency_limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE
    crash_retries: int | None = Field(default=None, ge=0, le=10)
    late_run_policy: LateRunPolicy | None = None
    overlap: Overlap = Overlap.ALLOW
    tags: list[str] = Field(default_factory=list)
    version: str | None = None
    description: Description = None
    paused: bool = False


class DeploymentUpdate(Body):
    entrypoint: str | None = Field(default=None, pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$")
    work_queue_name: str | None = None
    image: str | None = None
    parameters: JsonObject | None = None
    parameter_schema: JsonObject | None = None
    job_variables: JsonObject | None = None
    schedules: list[ScheduleIn] | None = None
    concurrency_limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    collision_strategy: CollisionStrategy | None = None
    crash_retries: int | None = Field(default=None, ge=0, le=10)
    late_run_policy: LateRunPolicy | None = None
    overlap: Overlap | None = None
    tags: list[str] | None = None
    version: str | None = None
    description: Description = None
    paused: bool | None = None


# --------------------------------------------------------------------------- flow runs


class BackfillCreate(Body):
    start: datetime
    end: datetime
    #: The schedule to run over the range (its id or slug); optional when the deployment has one.
    schedule_id: str | None = Field(default=None, max_length=100)
    reprocess: Reprocess = Reprocess.NONE
    max_active: int = Field(default=DEFAULT_MAX_ACTIVE, ge=1, le=MAX_ACTIVE_LIMIT)
    backwards: bool = False
    parameters: JsonObject = Field(default_factory=dict)
    #: Say what would happen, create nothing.
    dry_run: bool = False


class FlowRunCreate(Body):
    parameters: JsonObject = Field(default_factory=dict)
    job_variables: JsonObject = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    scheduled_time: datetime | None = None


class ChildRunCreate(FlowRunCreate):
    #: ``flow-name/deployment-name`` of the deployment to run.
    deployment: str = Field(min_length=3, max_length=201, pattern=r"^[^/]+/[^/]+$")


#: Task runs in one report; the runner sends at most this many per request.
MAX_TASK_RUNS_PER_REPORT = 1000


class TaskRunReport(Body):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str = Field(min_length=1, max_length=200)
    task_key: str = Field(min_length=1, max_length=500)
    #: SCHEDULED means waiting to retry; a task run is never CRASHED or CANCELLED on its own.
    state_type: Literal[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.COMPLETED,
                        StateType.FAILED]
    state_name: str = Field(min_length=1, max_length=50)
    attempts: int = Field(default=0, ge=0, le=10_000)
    cache_hit: bool = False
    error: str | None = Field(default=None, max_length=4000)
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)
    start_time: datetime | None = None
    end_time: datetime | None = None
    #: The runner's own copy of the flow run id (checked against the path; ignored otherwise).
    flow_run_id: str | None = Field(default=None, max_length=64)


class TaskRunBatch(Body):
    task_runs: list[TaskRunReport] = Field(max_length=MAX_TASK_RUNS_PER_REPORT)


#: Items in one log report (records of the run logger, each at most 16 KiB; pieces of captured text), and the
#: UTF-8 bytes of text one report carries (so a stored batch fits a DynamoDB item).
MAX_LOG_ITEMS_PER_REPORT = 5000
MAX_LOG_BYTES_PER_REPORT = 256 * 1024


class LogBatch(Body):
    """A numbered batch of a run's log: records of the run logger and captured text, stored as they come."""

    #: The runner numbers its batches 0, 1, 2, …; a batch sent again (its answer lost) replaces itself.
    seq: int = Field(ge=0, le=10**9)
    #: Records of the run logger (one line each) and captured text, in order; validated once, here.
    lines: list[LogItem] = Field(min_length=1, max_length=MAX_LOG_ITEMS_PER_REPORT)

    @model_validator(mode="after")
    def _bounded(self) -> LogBatch:
        size = sum(item.size() for item in self.lines)
        if size > MAX_LOG_BYTES_PER_REPORT:
            raise ValueError(f"lines: {size} bytes of text in one report; send at most {MAX_LOG_BYTES_PER_REPORT}")
        return self


#: The largest flow result kept by the control plane itself (JSON bytes); larger ones go to result storage.
MAX_RESULT_BYTES = 64 * 1024


def _bounded_result(value: Any) -> Any:
    if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_RESULT_BYTES:
        raise ValueError(f"is larger than {MAX_RESULT_BYTES // 1024} KB as JSON; keep it in result_storage")
    return value


#: The largest variable value (JSON bytes): configuration, not data.
MAX_VARIABLE_BYTES = 10 * 1024


def _bounded_variable(value: Any) -> Any:
    if len(json.dumps(value, separators=(",", ":"))) > MAX_VARIABLE_BYTES:
        raise ValueError(f"is larger than {MAX_VARIABLE_BYTES // 1024} KB as JSON")
    return value


class VariableSet(Body):
    value: Annotated[Any, AfterValidator(_bounded_variable)]
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=20)
    #: False: refuse (409) when the variable exists already.
    overwrite: bool = True


Labels = Annotated[dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=1000)]],
                   Field(max_length=20)]


class EventIn(Body):
    """An event a client emits (``pushpool.*`` names are the control plane's own)."""

    @field_validator("event")
    @classmethod
    def _not_ours(cls, value: str) -> str:
        if value.startswith("pushpool."):
            raise ValueError("names starting with 'pushpool.' are the control plane's own events")
        return value

    event: str = Field(min_length=1, max_length=1024)
    #: Labels of what the event is about (``pushpool.resource.id`` required); a run's token may leave it out:
    #: then it is the run.
    resource: Labels | None = None
    related: list[Labels] = Field(default_factory=list, max_length=20)
    payload: JsonObject = Field(default_factory=dict)
    occurred: datetime | None = None


Tag = Annotated[str, Field(min_length=1, max_length=100)]


class ConcurrencyLimitSet(Body):
    limit: int = Field(ge=0, le=MAX_LIMIT)


class SlotRequest(Body):
    #: The task run asking (its id): one holder per task run.
    holder: str = Field(min_length=1, max_length=64)
    tags: list[Tag] = Field(min_length=1, max_length=50)
    lease_seconds: float = Field(default=60, ge=5, le=3600)


class SlotRelease(Body):
    holder: str = Field(min_length=1, max_length=64)
    tags: list[Tag] = Field(min_length=1, max_length=50)


class StateUpdate(Body):
    type: StateType
    name: str | None = Field(default=None, max_length=100)
    message: str | None = Field(default=None, max_length=10_000)
    #: With COMPLETED: the flow's return value, when it persists it (see ``FlowRun.result``).
    result: Annotated[dict[str, Any] | None, AfterValidator(_bounded_result)] = None
