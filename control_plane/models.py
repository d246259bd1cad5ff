"""Domain records: what the store keeps and the services pass around.

All datetimes are timezone-aware UTC; all ids are UUIDs. Secrets are never held in
these records in clear: API keys and run tokens are kept as hashes, block data as
ciphertext.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from pushpool.control_plane.clock import utc
from pushpool.control_plane.errors import InvalidInput

#: Bound on client-given durations, keeping every derived time inside what datetimes can hold.
TEN_YEARS_SECONDS = 10 * 366 * 86400


_last_id = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Ids made later sort later, so new rows go to the end of every index keyed by id
    instead of landing on a random page (the scheduler writes thousands of runs at once).
    Within one process they also strictly increase (RFC 9562's monotonic random: an id made
    in the same millisecond as the last is that one plus one), so task runs list in the
    order they were made.
    """
    global _last_id
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    with _id_lock:
        if value <= _last_id and (_last_id & ((1 << 62) - 1)) != (1 << 62) - 1:
            value = _last_id + 1  # the random tail grows by one; version and variant bits stay
        _last_id = value
    return str(uuid.UUID(int=value))


#: Every datetime in a record: timezone-aware UTC (naive values are taken to be UTC).
UtcDatetime = Annotated[datetime, AfterValidator(utc)]
#: A run's place in a listing (:func:`run_position`): ``2026-06-01T12:00:00.000000Z#<run id>``.
RUN_POSITION_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#[0-9A-Za-z-]{1,64}$"

R = TypeVar("R", bound=BaseModel)


def with_changes(record: R, changes: dict[str, Any]) -> R:
    """``record`` with ``changes`` applied and validated (``model_copy`` would not validate them).

    A change that makes the record invalid (e.g. ``paused: null``) is an InvalidInput
    naming the field, and nothing is stored.
    """
    try:
        return type(record).model_validate({**record.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{field}: {first['msg']}",
                           errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]) from None


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


# --------------------------------------------------------------------------- tenancy


class Role(StrEnum):
    OWNER = "owner"
    DEVELOPER = "developer"
    RUNNER = "runner"
    VIEWER = "viewer"


class ActorKind(StrEnum):
    USER = "user"
    SERVICE_ACCOUNT = "service_account"


class Workspace(Record):
    id: str = Field(default_factory=new_id)
    name: str
    created: UtcDatetime
    #: Every webhook must name a service account, whose API key each call carries.
    require_webhook_service_account: bool = False


class Actor(Record):
    """Who holds API keys: a user (``ppu_`` keys) or a service account (``ppb_`` keys)."""

    id: str = Field(default_factory=new_id)
    kind: ActorKind
    name: str
    #: Instance administrators may create workspaces and users.
    is_admin: bool = False
    #: Service accounts belong to one workspace.
    workspace_id: str | None = None
    created: UtcDatetime


class Membership(Record):
    workspace_id: str
    actor_id: str
    role: Role


class ApiKey(Record):
    id: str = Field(default_factory=new_id)
    actor_id: str
    name: str
    key_hash: str
    #: The first characters of the key, enough for a person to recognise it.
    prefix: str
    created: UtcDatetime
    expires_at: UtcDatetime | None = None
    revoked_at: UtcDatetime | None = None


# --------------------------------------------------------------------------- pools and queues


class LateRunMode(StrEnum):
    RUN_ALL = "run_all"
    LATEST_ONLY = "latest_only"
    SKIP_LATE = "skip_late"


class LateRunPolicy(Record):
    """What to do with a backlog of auto-scheduled runs after an outage or a pause."""

    mode: LateRunMode = LateRunMode.RUN_ALL
    #: For ``skip_late``: runs later than this many seconds are skipped (CANCELLED, "Skipped").
    skip_after_seconds: int = Field(default=300, ge=0, le=TEN_YEARS_SECONDS)


class WorkPool(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    name: str
    type: str
    description: str | None = None
    base_job_template: dict[str, Any]
    concurrency_limit: int | None = None
    paused: bool = False
    prefetch_seconds: int = 0
    late_run_policy: LateRunPolicy = Field(default_factory=LateRunPolicy)
    #: Job variables a run may set when its caller cannot write the workspace (None: the pool type's
    #: defaults; see control_plane/services/overrides.py).
    run_overridable_variables: list[str] | None = None
    #: A run whose infrastructure failed (killed, out of memory, preempted, never started, vanished) is
    #: submitted again this many times, after ``crash_retry_delay_seconds`` doubling; never a flow that raised.
    crash_retries: int = 0
    crash_retry_delay_seconds: int = 10
    #: Resources a provisioner created for this pool (filled by provisioners).
    provisioning: dict[str, Any] = Field(default_factory=dict)
    created: UtcDatetime
    updated: UtcDatetime


class WorkQueue(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    pool_id: str
    name: str
    description: str | None = None
    #: Lower numbers are served first.
    priority: int = 1
    concurrency_limit: int | None = None
    paused: bool = False
    created: UtcDatetime


# --------------------------------------------------------------------------- blocks


class Block(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    name: str
    type: str
    #: Fernet token of the JSON data.
    ciphertext: str
    created: UtcDatetime
    updated: UtcDatetime


# --------------------------------------------------------------------------- deployments


class CollisionStrategy(StrEnum):
    ENQUEUE = "ENQUEUE"
    CANCEL_NEW = "CANCEL_NEW"


class Overlap(StrEnum):
    """What happens to a run that is due while the previous run of its deployment is still active (the set of
    Temporal's overlap policies; see control_plane/storage/claim_rules.py)."""

    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    CANCEL_OTHER = "cancel_other"


class Schedule(Record):
    id: str = Field(default_factory=new_id)
    slug: str | None = None
    cron: str | None = None
    interval_seconds: float | None = None
    anchor_date: UtcDatetime | None = None
    rrule: str | None = None
    timezone: str = "UTC"
    parameters: dict[str, Any] = Field(default_factory=dict)
    active: bool = True


class Deployment(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    flow_name: str
    name: str
    entrypoint: str
    pool_id: str
    queue_id: str
    image: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    schedules: list[Schedule] = Field(default_factory=list)
    concurrency_limit: int | None = None
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE
    #: Overrides the pool's ``crash_retries`` for this deployment's runs (None: the pool's).
    crash_retries: int | None = None
    #: Catch-up: what happens to occurrences missed while the control plane or the pool was down or paused
    #: (overrides the pool's late-run policy; None: the pool's). See docs/backfills.md.
    late_run_policy: LateRunPolicy | None = None
    overlap: Overlap = Overlap.ALLOW
    tags: list[str] = Field(default_factory=list)
    version: str | None = None
    description: str | None = None
    paused: bool = False
    created: UtcDatetime
    updated: UtcDatetime

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


# --------------------------------------------------------------------------- flow runs


class StateType(StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def holds_slot(self) -> bool:
        return self in (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)


FINAL_STATES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
ACTIVE_STATES = frozenset({StateType.PENDING, StateType.RUNNING, StateType.CANCELLING})


class State(Record):
    type: StateType
    name: str
    message: str | None = None
    timestamp: UtcDatetime


class FlowRun(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    deployment_id: str
    flow_name: str
    deployment_name: str
    name: str
    pool_id: str
    queue_id: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    state: State
    scheduled_time: UtcDatetime
    auto_scheduled: bool = False
    schedule_id: str | None = None
    #: Unique per deployment; makes schedule materialisation idempotent.
    idempotency_key: str | None = None
    #: ``flow-run retry``: the final run this one is a new attempt of (same parameters and job variables).
    retry_of: str | None = None
    #: The backfill that made this run (its ``scheduled_time`` is the occurrence it processes).
    backfill_id: str | None = None
    #: Times its infrastructure crashed and the run was submitted again (``crash_retries``).
    crash_attempts: int = 0
    #: A child run: the run whose flow started it (``run_deployment`` inside a flow), and how deep it is.
    parent_flow_run_id: str | None = None
    depth: int = 0
    #: The flow's return value when it persists it: ``{"value": ...}`` (JSON, at most 64 KiB),
    #: ``{"storage": ..., "key": ...}`` where the runner stored another, or ``{"unpersisted": why}``.
    result: dict[str, Any] | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    #: What the pusher returned: its handle on the infrastructure, and a link for people.
    infra_id: str | None = None
    console_url: str | None = None
    logs_url: str | None = None
    submitted_at: UtcDatetime | None = None
    submission_attempts: int = 0
    #: A claimed run's submission is owned by one dispatcher until this time.
    lease_until: UtcDatetime | None = None
    #: After a transient error, the next submission attempt waits until this time.
    next_attempt_at: UtcDatetime | None = None
    #: While a submission waits to be retried: the last transient error (throttling, quota, capacity).
    submission_error: str | None = None
    #: Runtime limit: past this time the reconciler stops the infrastructure.
    deadline: UtcDatetime | None = None
    cleaned_up: bool = False
    created: UtcDatetime
    updated: UtcDatetime


class TaskRun(Record):
    """One task run of a flow run, as its runner last reported it (task runs are kept with their flow run)."""

    id: str
    workspace_id: str
    flow_run_id: str
    name: str
    task_key: str
    #: SCHEDULED (waiting to retry), PENDING, RUNNING, COMPLETED or FAILED.
    state_type: StateType
    state_name: str
    attempts: int = 0
    cache_hit: bool = False
    error: str | None = None
    tags: list[str] = Field(default_factory=list)
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    #: When the control plane received the latest report.
    updated: UtcDatetime


class Variable(Record):
    """A named JSON value of a workspace, for flows to read and set (configuration, not secrets: use a block)."""

    workspace_id: str
    name: str
    value: Any
    tags: list[str] = Field(default_factory=list)
    created: UtcDatetime
    updated: UtcDatetime


class ConcurrencyLimit(Record):
    """At most ``limit`` task runs carrying ``tag`` run at once, across every run of the workspace.

    ``holders`` maps each task run holding a slot to when its lease ends (epoch seconds): a runner
    renews its leases while the task runs, so a slot whose runner died frees itself.
    """

    workspace_id: str
    tag: str
    limit: int
    holders: dict[str, float] = Field(default_factory=dict)
    #: Bumped by every write: writes are conditional on it (slots are taken by many runners at once).
    version: int = 0
    created: UtcDatetime
    updated: UtcDatetime

    def active(self, now: float) -> dict[str, float]:
        return {holder: until for holder, until in self.holders.items() if until > now}


#: The longest line kept; the runner and the API keep a longer one in pieces of this many characters.
MAX_LOG_LINE_CHARS = 16_384


def line_pieces(line: str) -> Iterator[str]:
    """A log line as it is kept: itself, or pieces of ``MAX_LOG_LINE_CHARS`` characters when it is longer."""
    if len(line) <= MAX_LOG_LINE_CHARS:
        yield line
        return
    for start in range(0, len(line), MAX_LOG_LINE_CHARS):
        yield line[start:start + MAX_LOG_LINE_CHARS]


def utf8_size(text: str) -> int:
    """Bytes of ``text`` as UTF-8, as the log limits count them (ASCII text, most logs, is not encoded to know)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class LogLine(BaseModel):
    """One line a run logged or printed."""

    model_config = ConfigDict(extra="forbid")

    timestamp: UtcDatetime
    #: Python's logging levels: 10 debug, 20 info, 30 warning, 40 error, 50 critical.
    level: int = Field(default=20, ge=0, le=100)
    #: At most 16 KiB: the runner sends a longer line in pieces.
    message: str = Field(max_length=MAX_LOG_LINE_CHARS)
    #: ``log`` (a logger, ``log_prints``), or the captured ``stdout``/``stderr``.
    stream: Literal["log", "stdout", "stderr"] = "log"
    logger: str | None = Field(default=None, max_length=200)
    task_run_id: str | None = Field(default=None, max_length=64)

    def line_count(self) -> int:
        return 1

    def size(self) -> int:
        return utf8_size(self.message)


class LogText(BaseModel):
    """Captured output, many lines at once: the lines of ``text`` (split at newlines) share a stream and a time.
    Kept as it came (one string, not an object per line); a line longer than a ``LogLine`` is read in pieces."""

    model_config = ConfigDict(extra="forbid")

    stream: Literal["stdout", "stderr"]
    timestamp: UtcDatetime
    text: str

    def line_count(self) -> int:
        return self.text.count("\n") + 1

    def size(self) -> int:
        return utf8_size(self.text)

    def lines(self) -> Iterator[str]:
        for line in self.text.split("\n"):
            yield from line_pieces(line)


def _kind_of_log_item(value: Any) -> str:
    return "text" if isinstance(value, LogText) or (isinstance(value, dict) and "text" in value) else "line"


#: One item of a log batch: a record (one line) or captured text (many).
LogItem = Annotated[Annotated[LogLine, Tag("line")] | Annotated[LogText, Tag("text")],
                    Discriminator(_kind_of_log_item)]


class LogChunk(Record):
    """A batch of a run's log lines as its runner sent it; ``seq`` orders a run's chunks."""

    flow_run_id: str
    seq: int
    received: UtcDatetime
    lines: list[LogItem]

    def line_count(self) -> int:
        return sum(item.line_count() for item in self.lines)


class FlowRunFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    states: list[StateType] | None = None
    deployment_id: str | None = None
    pool_id: str | None = None
    queue_id: str | None = None
    scheduled_after: UtcDatetime | None = None
    scheduled_before: UtcDatetime | None = None
    auto_scheduled: bool | None = None
    flow_name: str | None = Field(default=None, max_length=200)
    #: Runs that carry every one of these tags.
    tags: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None, max_length=10)
    sort: Literal["scheduled_asc", "scheduled_desc"] = "scheduled_desc"
    #: Keyset cursor: the position (:func:`run_position`) of the last run of the previous page; the page
    #: holds the runs after it in ``sort`` order.
    after: str | None = Field(default=None, pattern=RUN_POSITION_PATTERN)


def run_position(run: FlowRun) -> str:
    """Where a run sits in a listing by scheduled time: its time (fixed width, UTC) and id, sortable as text."""
    return f"{utc(run.scheduled_time).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{run.id}"
