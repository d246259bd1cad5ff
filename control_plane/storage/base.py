"""The Store protocol: everything the API and services need from storage.

Two backends implement it (``sqlite`` and ``dynamodb``) and one
contract test suite (``tests/control_plane/storage/contract.py``) runs against
each. Methods are deliberately specific (``claim_flow_runs``, ``acquire_submission``)
rather than a general query language, so a key-value backend can implement each
one with a few conditional writes.

Conventions:

* Every workspace-scoped getter takes the workspace id and returns ``None`` for an
  object of another workspace, exactly as for a missing one.
* ``create_*`` raises :class:`~control_plane.errors.AlreadyExists` on a name clash.
* Conditional writes return ``None`` (or ``False``) when their condition does not
  hold; they never half-apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pushpool.control_plane.backfill_models import Backfill
from pushpool.control_plane.event_models import Automation, Event, EventFilter, TriggerBucket, Webhook
from pushpool.control_plane.models import (
    Actor,
    ApiKey,
    Block,
    ConcurrencyLimit,
    Deployment,
    FlowRun,
    FlowRunFilter,
    LogChunk,
    Membership,
    State,
    StateType,
    TaskRun,
    Variable,
    WorkPool,
    WorkQueue,
    Workspace,
)


class WouldWait(Exception):  # noqa: N818 - a signal, not an error a caller reports
    """Raised inside ``SqliteStore.without_waiting()`` by a write that would have to wait for the
    database. Nothing was written: the caller runs the same work again where waiting is fine. Not a
    :class:`~control_plane.errors.PushpoolError`, so no error handler turns it into an answer."""


@dataclass
class ClaimResult:
    """What one atomic claim did."""

    #: Runs moved SCHEDULED → PENDING, each now holding its pool/queue/deployment slots.
    claimed: list[FlowRun] = field(default_factory=list)
    #: Runs cancelled because their deployment was full and its strategy is CANCEL_NEW, or skipped by its
    #: overlap policy (control_plane/storage/claim_rules.py).
    cancelled: list[FlowRun] = field(default_factory=list)
    #: Deployments (``overlap: cancel_other``) whose active runs the dispatcher is to cancel: a newer run is due.
    displacing: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DeploymentSummary:
    """What a list of deployments shows (a name, its pool, whether it runs on its own): cheap to read for
    thousands of deployments, where a whole :class:`Deployment` carries schemas, variables and schedules."""

    id: str
    flow_name: str
    name: str
    pool_id: str
    paused: bool
    active_schedules: int

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentSummary:
        return cls(deployment.id, deployment.flow_name, deployment.name, deployment.pool_id, deployment.paused,
                   sum(s.active for s in deployment.schedules))


class Store(Protocol):
    # ------------------------------------------------------------------ tenancy
    def create_workspace(self, workspace: Workspace) -> Workspace: ...
    def get_workspace(self, id_or_name: str) -> Workspace | None: ...
    def list_workspaces(self) -> list[Workspace]: ...
    def update_workspace(self, workspace: Workspace) -> None:
        """Its settings (the name does not change)."""
        ...

    def create_actor(self, actor: Actor) -> Actor: ...
    def get_actor(self, actor_id: str) -> Actor | None: ...
    def list_service_accounts(self, workspace_id: str) -> list[Actor]: ...
    def list_users(self) -> list[Actor]:
        """Every user of the instance (service accounts are not users), in no particular order."""
        ...

    def delete_actor(self, actor_id: str) -> None: ...

    def set_membership(self, membership: Membership) -> None: ...
    def get_membership(self, workspace_id: str, actor_id: str) -> Membership | None: ...
    def list_memberships(self, actor_id: str) -> list[Membership]:
        """The workspaces one actor belongs to."""
        ...

    def list_members(self, workspace_id: str) -> list[Membership]:
        """Everyone (users and service accounts) who belongs to one workspace."""
        ...

    def delete_membership(self, workspace_id: str, actor_id: str) -> None: ...

    def create_api_key(self, key: ApiKey) -> ApiKey: ...
    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None: ...
    def get_api_key(self, key_id: str) -> ApiKey | None: ...
    def list_api_keys(self, actor_id: str) -> list[ApiKey]: ...
    def update_api_key(self, key: ApiKey) -> None: ...

    # ------------------------------------------------------------------ pools and queues
    def create_work_pool(self, pool: WorkPool, default_queue: WorkQueue) -> WorkPool:
        """Create a pool together with its ``default`` queue, atomically."""
        ...

    def get_work_pool(self, workspace_id: str, name: str) -> WorkPool | None: ...
    def get_work_pool_by_id(self, workspace_id: str, pool_id: str) -> WorkPool | None: ...
    def list_work_pools(self, workspace_id: str) -> list[WorkPool]: ...
    def list_all_work_pools(self) -> list[WorkPool]:
        """Every pool of every workspace: what a tick walks over."""
        ...

    def update_work_pool(self, pool: WorkPool) -> None: ...
    def delete_work_pool(self, workspace_id: str, pool_id: str) -> None:
        """Delete the pool, its queues and its runs that never started."""
        ...

    def create_work_queue(self, queue: WorkQueue) -> WorkQueue: ...
    def get_work_queue(self, workspace_id: str, pool_id: str, name: str) -> WorkQueue | None: ...
    def get_work_queue_by_id(self, workspace_id: str, queue_id: str) -> WorkQueue | None: ...
    def list_work_queues(self, workspace_id: str, pool_id: str) -> list[WorkQueue]: ...
    def update_work_queue(self, queue: WorkQueue) -> None: ...
    def delete_work_queue(self, workspace_id: str, queue_id: str) -> None: ...

    # ------------------------------------------------------------------ blocks
    def create_block(self, block: Block) -> Block: ...
    def get_block(self, workspace_id: str, name: str) -> Block | None: ...
    def list_blocks(self, workspace_id: str) -> list[Block]: ...
    def update_block(self, block: Block) -> None: ...
    def delete_block(self, workspace_id: str, block_id: str) -> None: ...

    # ------------------------------------------------------------------ deployments
    def create_deployment(self, deployment: Deployment) -> Deployment: ...
    def get_deployment(self, workspace_id: str, deployment_id: str) -> Deployment | None: ...
    def get_deployment_by_name(self, workspace_id: str, flow_name: str, name: str) -> Deployment | None: ...
    def list_deployments(self, workspace_id: str, pool_id: str | None = None) -> list[Deployment]: ...
    def list_deployment_summaries(self, workspace_id: str) -> list[DeploymentSummary]:
        """Every deployment of the workspace as a summary, by flow and name."""
        ...

    def list_scheduled_deployments(self) -> list[Deployment]:
        """Deployments of every workspace that are not paused and have an active schedule."""
        ...

    def update_deployment(self, deployment: Deployment) -> None: ...
    def delete_deployment(self, workspace_id: str, deployment_id: str) -> None:
        """Delete the deployment and its runs that never started."""
        ...

    def put_variable(self, variable: Variable) -> None:
        """Create or replace the workspace's variable of that name."""
        ...

    def get_variable(self, workspace_id: str, name: str) -> Variable | None: ...
    def list_variables(self, workspace_id: str) -> list[Variable]: ...
    def count_variables(self, workspace_id: str) -> int: ...
    def delete_variable(self, workspace_id: str, name: str) -> bool:
        """``True`` when there was one."""
        ...

    def get_concurrency_limit(self, workspace_id: str, tag: str) -> ConcurrencyLimit | None: ...
    def list_concurrency_limits(self, workspace_id: str) -> list[ConcurrencyLimit]: ...
    def save_concurrency_limits(self, limits: list[ConcurrencyLimit]) -> bool:
        """Write these limits (new or changed) in one atomic step, each only if it is still at the ``version``
        it was read at (0: new); ``False``, writing nothing, when another write came first. Versions grow by one."""
        ...

    def delete_concurrency_limit(self, workspace_id: str, tag: str) -> bool: ...

    # ------------------------------------------------------------------ flow runs
    def create_flow_run(self, run: FlowRun) -> FlowRun:
        """Insert a run; raises AlreadyExists when (deployment, idempotency_key) is taken."""
        ...

    def create_flow_runs_if_absent(self, runs: list[FlowRun]) -> int:
        """Insert the runs whose (deployment, idempotency_key) is free; return how many were new."""
        ...

    def get_flow_run(self, workspace_id: str | None, run_id: str) -> FlowRun | None:
        """``workspace_id=None`` is for internal callers (run-token auth, services)."""
        ...

    def list_flow_runs(
        self, workspace_id: str, flt: FlowRunFilter, limit: int = 200, offset: int = 0
    ) -> list[FlowRun]: ...

    def page_flow_runs(self, workspace_id: str, flt: FlowRunFilter,
                       limit: int = 50) -> tuple[list[FlowRun], str | None]:
        """One page of the runs ``flt`` selects (``flt.after`` is where the previous page ended) and the cursor
        of the next page, ``None`` at the end. A page may hold fewer than ``limit`` runs when a store bounds the
        reads one page may cost; the cursor then goes on from the last run it read."""
        ...

    def latest_auto_scheduled_time(self, deployment_id: str, now: datetime) -> tuple[int, datetime | None]:
        """(number of SCHEDULED auto runs after ``now``, latest scheduled time of any auto run)."""
        ...

    def delete_scheduled_auto_runs(self, deployment_id: str, after: datetime) -> int:
        """Delete auto-scheduled runs still SCHEDULED at or after ``after``; return the count."""
        ...

    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        expect: frozenset[StateType] | set[StateType] | None = None,
        changes: dict[str, Any] | None = None,
    ) -> FlowRun | None:
        """Move a run to ``state``, appending it to the history, in one atomic write.

        ``expect`` is the set of state types the run must currently be in; when it is
        not, nothing is written and ``None`` comes back. ``changes`` are further fields
        of the run to set in the same write. Entering RUNNING sets ``start_time``;
        entering a final state sets ``end_time`` and releases the run's concurrency
        slots at once.
        """
        ...

    def update_flow_run(
        self, run_id: str, changes: dict[str, Any], *, expect: dict[str, Any] | None = None
    ) -> FlowRun | None:
        """Set fields if every ``expect`` field currently has that value (``None`` matches unset)."""
        ...

    def get_state_history(self, run_id: str) -> list[State]: ...

    def count_flow_runs_by_state(self, workspace_id: str, after: datetime, before: datetime, *,
                                 at_most: int = 100_000) -> tuple[dict[StateType, int], bool]:
        """How many of the workspace's runs scheduled in ``[after, before)`` are in each state, reading at most
        ``at_most`` of them (a dashboard's chart: bounded work per page); ``True`` when every run was counted."""
        ...

    def count_active_runs(self, pool_id: str) -> int:
        """How many of the pool's runs hold a slot of its concurrency limit (PENDING, RUNNING, CANCELLING)."""
        ...

    def list_child_runs(self, parent_id: str, limit: int = 1000) -> list[FlowRun]:
        """Runs started by the flow of ``parent_id`` (``parent_flow_run_id``), oldest first."""
        ...

    def count_child_runs(self, parent_id: str) -> int:
        """How many of the runs the flow of ``parent_id`` started still exist (a deleted child leaves the list)."""
        ...

    def save_task_runs(self, flow_run_id: str, task_runs: list[TaskRun], *, max_reports: int) -> bool:
        """Insert or replace task runs (by flow run and id); ``False``, writing nothing, once the flow run's
        reports (every task run of every call counts) would pass ``max_reports``."""
        ...

    def list_task_runs(self, flow_run_id: str, *, after: str | None = None, limit: int = 1000) -> list[TaskRun]:
        """A flow run's task runs in id order (ids are time-ordered), after the id ``after``."""
        ...

    def append_log_chunk(self, chunk: LogChunk, *, size: int, max_bytes: int, keep_until: datetime) -> bool:
        """Store a chunk of a run's log lines (replacing one with the same ``seq``: a resent batch) unless the
        run's log bytes, ``size`` included, would pass ``max_bytes`` (``False``, nothing written)."""
        ...

    def list_log_chunks(self, flow_run_id: str, *, after: int | None = None, limit: int = 100,
                        newest_first: bool = False) -> list[LogChunk]:
        """A run's chunks by ``seq`` (after ``after``; the newest first for a tail)."""
        ...

    def delete_expired_log_chunks(self, now: datetime, limit: int = 5000) -> int:
        """Retention: delete up to ``limit`` chunks kept until before ``now`` (DynamoDB: its TTL does)."""
        ...

    def delete_flow_run(self, workspace_id: str, run_id: str, *, expect: StateType) -> bool:
        """Delete the run, its state history and token, if it is still in state ``expect``.

        ``False`` (and nothing deleted) when the run is gone or has moved on. Only a run that holds
        no concurrency slot (SCHEDULED or final) may be deleted.
        """
        ...

    def claim_flow_runs(self, pool_id: str, now: datetime, lease_until: datetime, limit: int) -> ClaimResult:
        """The dispatcher's one atomic step for one pool.

        Picks SCHEDULED runs of the pool due by ``now + pool.prefetch_seconds`` from
        queues that are not paused, in queue priority then scheduled-time order, and
        moves as many as the pool, queue and deployment concurrency limits allow to
        PENDING (taking their slots and a submission lease until ``lease_until``).
        A run whose deployment is full is left SCHEDULED (``ENQUEUE``) or CANCELLED
        (``CANCEL_NEW``). Nothing is claimed from a paused pool. Two callers never
        claim the same run and never exceed a limit together.
        """
        ...

    def list_submittable_runs(self, now: datetime, limit: int) -> list[FlowRun]:
        """PENDING runs with no infrastructure id whose lease has lapsed and whose retry time has come."""
        ...

    def acquire_submission(self, run_id: str, now: datetime, lease_until: datetime) -> FlowRun | None:
        """Take the submission lease of a submittable run (see above); ``None`` if someone else has it."""
        ...

    def list_runs_to_reconcile(self, limit: int) -> list[FlowRun]:
        """Runs with an infrastructure id that are active, or final but not yet cleaned up."""
        ...

    def list_overdue_scheduled_runs(self, before: datetime, limit: int,
                                    since: datetime | None = None) -> list[FlowRun]:
        """SCHEDULED runs (any workspace) scheduled before ``before`` (and at or after ``since``), oldest first."""
        ...

    def count_due_runs(self, pool_id: str, now: datetime, at_most: int = 1000) -> int:
        """How many of the pool's SCHEDULED runs are due at ``now`` (counting at most ``at_most``): a metric's
        queue depth, read once a dispatch pass."""
        ...

    def earliest_scheduled_time(self, pool_id: str, after: datetime, before: datetime) -> datetime | None:
        """The earliest scheduled time of the pool's SCHEDULED runs in ``(after, before]`` (the next to wake for)."""
        ...

    def set_run_token(self, run_id: str, token_hash: str, expires_at: datetime) -> None: ...
    def get_run_token(self, run_id: str) -> tuple[str, datetime] | None: ...

    # ------------------------------------------------------------------ events, webhooks, automations
    def append_events(self, events: list[Event]) -> int:
        """Store events (an id already stored in the workspace is left as it is); return how many were written."""
        ...

    def list_events(self, workspace_id: str, flt: EventFilter, limit: int = 100) -> list[Event]:
        """Events in ``occurred`` then id order (descending unless ``flt.ascending``), after ``flt.after``."""
        ...

    def delete_events_before(self, before: datetime, limit: int = 5000) -> int:
        """Retention: delete up to ``limit`` events (any workspace) that occurred before ``before``."""
        ...

    def create_webhook(self, webhook: Webhook) -> Webhook: ...
    def get_webhook(self, workspace_id: str, name: str) -> Webhook | None: ...
    def get_webhook_by_slug(self, slug: str) -> Webhook | None: ...
    def list_webhooks(self, workspace_id: str) -> list[Webhook]: ...
    def update_webhook(self, webhook: Webhook) -> None: ...
    def delete_webhook(self, workspace_id: str, webhook_id: str) -> None: ...

    def create_automation(self, automation: Automation) -> Automation: ...
    def get_automation(self, workspace_id: str, automation_id: str) -> Automation | None: ...
    def get_automation_by_name(self, workspace_id: str, name: str) -> Automation | None: ...
    def list_automations(self, workspace_id: str) -> list[Automation]: ...
    def update_automation(self, automation: Automation) -> None: ...
    def delete_automation(self, workspace_id: str, automation_id: str) -> None:
        """Delete the automation and its trigger buckets."""
        ...

    def get_trigger_bucket(self, automation_id: str, key: str) -> TriggerBucket | None: ...
    def save_trigger_bucket(self, bucket: TriggerBucket, expect_version: int | None) -> bool:
        """Write the bucket if the stored one has ``expect_version`` (``None``: if there is none)."""
        ...

    def delete_trigger_bucket(self, automation_id: str, key: str, expect_version: int) -> bool: ...
    def list_due_trigger_buckets(self, now: datetime, limit: int = 500) -> list[TriggerBucket]:
        """Buckets (any workspace) whose deadline is at or before ``now``, earliest first."""
        ...

    # ------------------------------------------------------------------ backfills
    def create_backfill(self, backfill: Backfill) -> Backfill: ...
    def get_backfill(self, workspace_id: str, backfill_id: str) -> Backfill | None: ...
    def list_backfills(self, workspace_id: str, deployment_id: str | None = None, limit: int = 100) -> list[Backfill]:
        """Newest first."""
        ...

    def list_running_backfills(self, limit: int = 100) -> list[Backfill]:
        """RUNNING backfills of every workspace, oldest first (the scheduler pass works through them)."""
        ...

    def save_backfill(self, backfill: Backfill) -> Backfill | None:
        """Write ``backfill`` (its ``version`` incremented) if the stored one still has ``backfill.version``."""
        ...

    # ------------------------------------------------------------------ meta
    def get_meta(self, name: str) -> str | None:
        """A small named value kept by the control plane itself (e.g. ``last_tick``)."""
        ...

    def set_meta(self, name: str, value: str) -> None: ...

    def set_meta_once(self, name: str, value: str) -> str:
        """Store ``value`` unless ``name`` already has one; return the value that is stored (first writer wins)."""
        ...

    def close(self) -> None: ...
