"""Request and response bodies of the HTTP API (records that are safe to return are used as is)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from control_plane.models import (
    TEN_YEARS_SECONDS,
    ActorKind,
    CollisionStrategy,
    LateRunPolicy,
    Role,
    StateType,
)

NAME = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

#: Bounds that keep client numbers inside what datetimes and SQLite integers can hold.
TEN_YEARS = TEN_YEARS_SECONDS
MAX_LIMIT = 1_000_000
MAX_PRIORITY = 1_000_000


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
    description: str | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    paused: bool = False
    prefetch_seconds: int = Field(default=0, ge=0, le=3600)
    late_run_policy: LateRunPolicy | None = None
    run_overridable_variables: list[str] | None = Field(
        default=None, max_length=100, description="Job variables a run may set when its caller cannot write the "
        "workspace (default: the pool type's resource variables).")


class WorkPoolUpdate(Body):
    description: str | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    clear_concurrency_limit: bool = False
    paused: bool | None = None
    prefetch_seconds: int | None = Field(default=None, ge=0, le=3600)
    late_run_policy: LateRunPolicy | None = None
    run_overridable_variables: list[str] | None = Field(default=None, max_length=100)
    provisioning: dict[str, Any] | None = Field(default=None, description="What a provisioner created.")


class WorkQueueCreate(Body):
    name: str = NAME
    description: str | None = None
    priority: int = Field(default=1, ge=1, le=MAX_PRIORITY)
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    paused: bool = False


class WorkQueueUpdate(Body):
    description: str | None = None
    priority: int | None = Field(default=None, ge=1, le=MAX_PRIORITY)
    concurrency_limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    clear_concurrency_limit: bool = False
    paused: bool | None = None


# --------------------------------------------------------------------------- blocks


class BlockCreate(Body):
    #: No dots: ``{{ pushpool.blocks.NAME.field }}`` must be unambiguous.
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    type: str
    data: dict[str, Any]


class BlockUpdate(Body):
    data: dict[str, Any]


class BlockOut(BaseModel):
    id: str
    name: str
    type: str
    data: dict[str, Any] = Field(description="Secret fields are masked.")
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
    parameters: dict[str, Any] = Field(default_factory=dict)
    active: bool = True
    slug: str | None = None


class DeploymentCreate(Body):
    flow_name: str = NAME
    name: str = NAME
    entrypoint: str = Field(min_length=3, pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$")
    work_pool_name: str
    work_queue_name: str | None = None
    image: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleIn] = Field(default_factory=list)
    concurrency_limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE
    tags: list[str] = Field(default_factory=list)
    version: str | None = None
    description: str | None = None
    paused: bool = False


class DeploymentUpdate(Body):
    entrypoint: str | None = Field(default=None, pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$")
    work_queue_name: str | None = None
    image: str | None = None
    parameters: dict[str, Any] | None = None
    parameter_schema: dict[str, Any] | None = None
    job_variables: dict[str, Any] | None = None
    schedules: list[ScheduleIn] | None = None
    concurrency_limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    collision_strategy: CollisionStrategy | None = None
    tags: list[str] | None = None
    version: str | None = None
    description: str | None = None
    paused: bool | None = None


# --------------------------------------------------------------------------- flow runs


class FlowRunCreate(Body):
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    scheduled_time: datetime | None = None


class StateUpdate(Body):
    type: StateType
    name: str | None = Field(default=None, max_length=100)
    message: str | None = Field(default=None, max_length=10_000)
