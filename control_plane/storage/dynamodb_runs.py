"""Flow-run storage for the DynamoDB backend, including the dispatcher's atomic claim.

Each run item carries a ``ver`` counter; every write is conditional on the version it
read (optimistic concurrency), so two Lambda invocations never both move one run.
Concurrency slots are counters (``SLOTS#pool|queue|deployment#id``); claiming a run
is ONE ``TransactWriteItems``: the run SCHEDULED → PENDING (if still at the version
read), its state-history item, and the three counters incremented on the condition
that each stays under its limit. A run leaving PENDING/RUNNING/CANCELLING gives its
slots back in the same transaction that records its state. The items and the transaction actions
that write them are in :mod:`.dynamodb_run_items`.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import (
    ACTIVE_STATES,
    FlowRun,
    FlowRunFilter,
    State,
    StateType,
    WorkPool,
    run_position,
)
from pushpool.control_plane.storage.base import ClaimResult
from pushpool.control_plane.storage.claim_rules import Collisions
from pushpool.control_plane.storage.dynamodb_run_items import (
    put_run,
    put_state,
    run_item,
    slot,
    slot_delta,
    slots,
    stored_run,
    version_of,
)
from pushpool.control_plane.storage.dynamodb_schema import (
    HIGH,
    INDEXES,
    LOWEST,
    delete_action,
    to_attrs,
)
from pushpool.control_plane.storage.dynamodb_table import Item, Table, TransactionFailed
from pushpool.control_plane.storage.records import from_ts, run_with_state, ts

if TYPE_CHECKING:
    from pushpool.control_plane.models import WorkQueue

#: Optimistic-concurrency retries before a conditional run write gives up.
_RETRIES = 25
#: How many due runs one claim looks at (in scheduled-time order) per pool.
_CLAIM_WINDOW = 500


class DynamoRunsMixin:
    """Flow-run half of :class:`~control_plane.storage.dynamodb.DynamoDbStore`."""

    #: How many runs one page of a filtered listing reads at most (each is a billed read).
    RUN_SCAN_BUDGET = 5000

    table: Table

    if TYPE_CHECKING:
        def _deployment_limits(self, deployment_id: str) -> tuple[int | None, str]: ...
        def list_all_work_pools(self) -> list[WorkPool]: ...
        def _list(self, model: Any, pk: str, prefix: str | None = None, *, index: str | None = None) -> list: ...

    # ------------------------------------------------------------------ helpers
    def _read(self, run_id: str) -> tuple[Item, FlowRun] | None:
        item = self.table.get(f"RUN#{run_id}", "RUN")
        return (item, stored_run(item)) if item else None

    def _index(self, index: str, pk: str, low: str = LOWEST, high: str = HIGH, *, forward: bool = True,
               page_size: int | None = None):
        pk_name, sk_name = INDEXES[index]
        return self.table.query(pk, index=index, sk_between=(low, high), forward=forward, page_size=page_size,
                                pk_name=pk_name, sk_name=sk_name)

    def _active(self, kind: str, ident: str) -> int:
        item = self.table.get(f"SLOTS#{kind}#{ident}", "SLOTS")
        return int(item["active"]["N"]) if item and "active" in item else 0

    def count_active_runs(self, pool_id: str) -> int:
        return self._active("pool", pool_id)

    def _free(self, kind: str, ident: str, limit: int | None) -> float:
        return float("inf") if limit is None else limit - self._active(kind, ident)

    def _delete_run(self, item: Item, expect: StateType = StateType.SCHEDULED) -> bool:
        """Delete a run that is still in state ``expect``, with its guard, history and token."""
        run = stored_run(item)
        actions: list[dict[str, Any]] = [{"Delete": {
            "Key": {"PK": {"S": f"RUN#{run.id}"}, "SK": {"S": "RUN"}},
            "ConditionExpression": "st = :s", "ExpressionAttributeValues": {":s": {"S": expect.value}}}}]
        if run.idempotency_key is not None:
            actions.append({"Delete": {"Key": {"PK": {"S": f"DEPRUNKEY#{run.deployment_id}"},
                                               "SK": {"S": run.idempotency_key}}}})
        if run.parent_flow_run_id is not None:  # out of its parent's list of children, as on SQLite
            actions.append(delete_action(f"RUN#{run.parent_flow_run_id}", f"CHILD#{run.id}"))
        try:
            self.table.transact(actions)
        except TransactionFailed:
            return False
        self.table.delete_many([(i["PK"]["S"], i["SK"]["S"]) for i in self.table.query(f"RUN#{run.id}")])
        return True

    def _delete_unstarted_runs(self, *, pool_id: str | None = None, queue_id: str | None = None,
                               deployment_id: str | None = None) -> int:
        if deployment_id is not None:
            items = [i for i in self._index("deployment", f"DEPRUNS#{deployment_id}") if i["st"]["S"] == "SCHEDULED"]
        else:
            items = list(self._index("due", f"DUE#{pool_id}"))
        if queue_id is not None:
            items = [i for i in items if stored_run(i).queue_id == queue_id]
        return sum(self._delete_run(i) for i in items)

    def delete_flow_run(self, workspace_id: str, run_id: str, *, expect: StateType) -> bool:
        if expect in ACTIVE_STATES:
            raise ValueError("a run holding concurrency slots cannot be deleted")
        item = self.table.get(f"RUN#{run_id}", "RUN")
        if item is None or stored_run(item).workspace_id != workspace_id:
            return False
        return self._delete_run(item, expect)

    # ------------------------------------------------------------------ create and read
    def _create_actions(self, run: FlowRun) -> list[dict[str, Any]]:
        actions = [put_run(run, 1, None), put_state(run.id, 1, run.state)]
        if run.idempotency_key is not None:
            guard = to_attrs({"PK": f"DEPRUNKEY#{run.deployment_id}", "SK": run.idempotency_key, "run_id": run.id})
            actions.append({"Put": {"Item": guard, "ConditionExpression": "attribute_not_exists(PK)"}})
        if run.state.type in ACTIVE_STATES:
            actions += slots(run, 1)
        if run.parent_flow_run_id is not None:  # the parent's list of children (deleted with the parent)
            link = to_attrs({"PK": f"RUN#{run.parent_flow_run_id}", "SK": f"CHILD#{run.id}", "child": run.id})
            actions.append({"Put": {"Item": link}})
        return actions

    def list_child_runs(self, parent_id: str, limit: int = 1000) -> list[FlowRun]:
        links = itertools.islice(self.table.query(f"RUN#{parent_id}", sk_prefix="CHILD#"), limit)
        ids = [link["child"]["S"] for link in links]
        runs = [stored_run(i) for i in self.table.batch_get([(f"RUN#{c}", "RUN") for c in ids])]
        found = {run.id: run for run in runs}
        return [found[c] for c in ids if c in found]

    def count_child_runs(self, parent_id: str) -> int:
        return sum(1 for _ in self.table.query(f"RUN#{parent_id}", sk_prefix="CHILD#"))  # small link items only

    def create_flow_run(self, run: FlowRun) -> FlowRun:
        try:
            self.table.transact(self._create_actions(run))
        except TransactionFailed as exc:
            raise AlreadyExists(f"Flow run with idempotency key {run.idempotency_key!r} already exists") from exc
        return run

    def create_flow_runs_if_absent(self, runs: list[FlowRun]) -> int:
        keyed = [(f"DEPRUNKEY#{r.deployment_id}", r.idempotency_key) for r in runs if r.idempotency_key is not None]
        taken = {(i["PK"]["S"], i["SK"]["S"]) for i in self.table.batch_get(keyed)} if keyed else set()
        created = 0
        for run in runs:
            if (f"DEPRUNKEY#{run.deployment_id}", run.idempotency_key) in taken:
                continue
            try:
                self.create_flow_run(run)
                created += 1
            except AlreadyExists:
                pass
        return created

    def get_flow_run(self, workspace_id: str | None, run_id: str) -> FlowRun | None:
        found = self._read(run_id)
        if found is None or (workspace_id is not None and found[1].workspace_id != workspace_id):
            return None
        return found[1]

    def list_flow_runs(
        self, workspace_id: str, flt: FlowRunFilter, limit: int = 200, offset: int = 0
    ) -> list[FlowRun]:
        return list(itertools.islice(self._matching_runs(workspace_id, flt, limit + offset), offset, offset + limit))

    def page_flow_runs(self, workspace_id: str, flt: FlowRunFilter,
                       limit: int = 50) -> tuple[list[FlowRun], str | None]:
        page: list[FlowRun] = []
        for run in self._matching_runs(workspace_id, flt, limit + 1, positions=True):
            if isinstance(run, str):  # the read budget is spent: the next page goes on from there
                return page, run
            if len(page) == limit:
                return page, run_position(page[-1])
            page.append(run)
        return page, None

    def _matching_runs(self, workspace_id: str, flt: FlowRunFilter, wanted: int, *, positions: bool = False):
        """The runs ``flt`` selects in its order, read from the workspace's (or deployment's) index; filters
        other than time are applied to what is read. With ``positions``, reading stops after
        ``RUN_SCAN_BUDGET`` items and yields the position of the last one looked at instead of a run (a page
        can come short, never at an unbounded cost)."""
        index, pk = ("deployment", f"DEPRUNS#{flt.deployment_id}") if flt.deployment_id else \
            ("workspace", f"WSRUNS#{workspace_id}")
        low = ts(flt.scheduled_after) if flt.scheduled_after else LOWEST
        high = ts(flt.scheduled_before) + HIGH if flt.scheduled_before else HIGH
        forward = flt.sort == "scheduled_asc"
        if flt.after is not None:
            low, high = (max(low, flt.after), high) if forward else (low, min(high, flt.after))
        states, tags = set(flt.states or []), set(flt.tags or [])
        matched, last = 0, None
        items = self._index(index, pk, low, high, forward=forward, page_size=min(1000, max(50, wanted)))
        for read, item in enumerate(items, start=1):
            if positions and read > self.RUN_SCAN_BUDGET:
                yield last
                return
            run = stored_run(item)
            last = run_position(run)
            if (last == flt.after or run.workspace_id != workspace_id
                    or (states and run.state.type not in states)
                    or (flt.pool_id and run.pool_id != flt.pool_id) or (flt.queue_id and run.queue_id != flt.queue_id)
                    or (flt.auto_scheduled is not None and run.auto_scheduled != flt.auto_scheduled)
                    or (flt.flow_name is not None and run.flow_name != flt.flow_name)
                    or not tags <= set(run.tags)):
                continue
            yield run
            matched += 1
            if matched >= wanted:
                return

    def count_flow_runs_by_state(self, workspace_id: str, after: datetime, before: datetime, *,
                                 at_most: int = 100_000) -> tuple[dict[StateType, int], bool]:
        pk_name, sk_name = INDEXES["workspace"]
        counts: dict[StateType, int] = {}
        items = self.table.query(f"WSRUNS#{workspace_id}", index="workspace", sk_between=(ts(after), ts(before)),
                                 pk_name=pk_name, sk_name=sk_name, page_size=1000, attributes=("st",))
        for seen, item in enumerate(items):  # only each run's state is read back (still billed by item size)
            if seen == at_most:
                return counts, False
            state = StateType(item["st"]["S"])
            counts[state] = counts.get(state, 0) + 1
        return counts, True

    def latest_auto_scheduled_time(self, deployment_id: str, now: datetime) -> tuple[int, datetime | None]:
        latest = next(iter(self._index("auto", f"DEPAUTO#{deployment_id}", forward=False, page_size=1)), None)
        upcoming = sum(i["st"]["S"] == "SCHEDULED"
                       for i in self._index("auto", f"DEPAUTO#{deployment_id}", ts(now) + HIGH))
        return upcoming, (stored_run(latest).scheduled_time if latest else None)

    def delete_scheduled_auto_runs(self, deployment_id: str, after: datetime) -> int:
        items = [i for i in self._index("auto", f"DEPAUTO#{deployment_id}", ts(after)) if i["st"]["S"] == "SCHEDULED"]
        return sum(self._delete_run(i) for i in items)

    def get_state_history(self, run_id: str) -> list[State]:
        return [State.model_validate_json(i["doc"]["S"]) for i in self.table.query(f"RUN#{run_id}", sk_prefix="STATE#")]

    # ------------------------------------------------------------------ conditional writes
    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        expect: frozenset[StateType] | set[StateType] | None = None,
        changes: dict[str, Any] | None = None,
    ) -> FlowRun | None:
        for _ in range(_RETRIES):
            found = self._read(run_id)
            if found is None or (expect is not None and found[1].state.type not in expect):
                return None
            item, run = found
            updated = run_with_state(run, state, changes)
            version = version_of(item)
            actions = [put_run(updated, version + 1, version), put_state(run_id, version + 1, state)]
            delta = slot_delta(run.state.type, state.type)
            if delta:
                actions += slots(run, delta)
            try:
                self.table.transact(actions)
                return updated
            except TransactionFailed:
                continue
        return None

    def update_flow_run(
        self, run_id: str, changes: dict[str, Any], *, expect: dict[str, Any] | None = None
    ) -> FlowRun | None:
        for _ in range(_RETRIES):
            found = self._read(run_id)
            if found is None:
                return None
            item, run = found
            for field, value in (expect or {}).items():
                current = run.state.type if field == "state_type" else getattr(run, field)
                if current != value:
                    return None
            updated = run.model_copy(update=changes)
            if self._replace(item, updated):
                return updated
        return None

    def _replace(self, item: Item, run: FlowRun) -> bool:
        version = version_of(item)
        return self.table.put(run_item(run, version + 1), condition="ver = :v",
                              values={":v": {"N": str(version)}})

    # ------------------------------------------------------------------ dispatch
    def claim_flow_runs(self, pool_id: str, now: datetime, lease_until: datetime, limit: int) -> ClaimResult:
        result = ClaimResult()
        pool_item = self.table.get(f"POOL#{pool_id}", "POOL")
        if pool_item is None:
            return result
        pool = WorkPool.model_validate_json(pool_item["doc"]["S"])
        if pool.paused:
            return result
        queues: dict[str, WorkQueue] = {q.id: q for q in self._list_pool_queues(pool_id)}
        cutoff = ts(now + timedelta(seconds=pool.prefetch_seconds)) + HIGH
        candidates = []
        for item in self._index("due", f"DUE#{pool_id}", LOWEST, cutoff, page_size=_CLAIM_WINDOW):
            run = stored_run(item)
            queue = queues.get(run.queue_id)
            if queue is not None and not queue.paused:
                candidates.append((queue.priority, run.scheduled_time, run.id, run, item))
            if len(candidates) >= _CLAIM_WINDOW:
                break
        candidates.sort(key=lambda c: c[:3])
        pool_free = self._free("pool", pool_id, pool.concurrency_limit)
        queue_free = {q.id: self._free("queue", q.id, q.concurrency_limit) for q in queues.values()}
        deployments: dict[str, tuple[int | None, str]] = {}
        deployment_free: dict[str, float] = {}
        collisions = Collisions.for_candidates([c[3] for c in candidates])
        for *_, run, item in candidates:
            if len(result.claimed) >= limit or pool_free <= 0:
                break
            queue = queues[run.queue_id]
            if queue_free[queue.id] <= 0:
                continue
            if run.deployment_id not in deployments:
                deployments[run.deployment_id] = self._deployment_limits(run.deployment_id)
                deployment_free[run.deployment_id] = self._free(
                    "deployment", run.deployment_id, deployments[run.deployment_id][0])
            dep_limit, strategy = deployments[run.deployment_id]
            outcome = collisions.superseded(run, strategy, now) or (
                collisions.blocked(run, strategy, now) if deployment_free[run.deployment_id] <= 0 else None)
            if outcome is not None:
                if outcome != "wait":
                    cancelled = self._cancel_unclaimed(run, item, outcome)
                    if cancelled is not None:
                        result.cancelled.append(cancelled)
                continue
            state = State(type=StateType.PENDING, name="Pending", timestamp=now)
            claimed = run_with_state(run, state, {
                "lease_until": lease_until, "submission_attempts": run.submission_attempts + 1,
            })
            version = version_of(item)
            try:
                self.table.transact([
                    put_run(claimed, version + 1, version), put_state(run.id, version + 1, state),
                    slot("pool", pool_id, 1, pool.concurrency_limit),
                    slot("queue", queue.id, 1, queue.concurrency_limit),
                    slot("deployment", run.deployment_id, 1, dep_limit),
                ])
            except TransactionFailed as exc:
                # Someone else moved the run, or took the last slot: re-read what was contended.
                if exc.failed(2):
                    pool_free = self._free("pool", pool_id, pool.concurrency_limit)
                if exc.failed(3):
                    queue_free[queue.id] = self._free("queue", queue.id, queue.concurrency_limit)
                if exc.failed(4):
                    deployment_free[run.deployment_id] = self._free("deployment", run.deployment_id, dep_limit)
                continue
            result.claimed.append(claimed)
            pool_free -= 1
            queue_free[queue.id] -= 1
            deployment_free[run.deployment_id] -= 1
        result.displacing = collisions.displacing
        return result

    def _list_pool_queues(self, pool_id: str) -> list[WorkQueue]:
        from pushpool.control_plane.models import WorkQueue

        return self._list(WorkQueue, f"POOL#{pool_id}", "QUEUE#")

    def _cancel_unclaimed(self, run: FlowRun, item: Item, state: State) -> FlowRun | None:
        """Cancel ``run`` (read as ``item``) if nobody changed it since."""
        cancelled = run_with_state(run, state, None)
        version = version_of(item)
        try:
            self.table.transact([put_run(cancelled, version + 1, version), put_state(run.id, version + 1, state)])
        except TransactionFailed:
            return None
        return cancelled

    def list_submittable_runs(self, now: datetime, limit: int) -> list[FlowRun]:
        found = []
        for item in self._index("lists", "SUBMIT", LOWEST, ts(now) + HIGH, page_size=limit):
            found.append(stored_run(item))
            if len(found) >= limit:
                break
        return found

    def acquire_submission(self, run_id: str, now: datetime, lease_until: datetime) -> FlowRun | None:
        for _ in range(_RETRIES):
            found = self._read(run_id)
            if found is None:
                return None
            item, run = found
            if (
                run.state.type is not StateType.PENDING
                or run.infra_id is not None
                or (run.lease_until is not None and run.lease_until > now)
                or (run.next_attempt_at is not None and run.next_attempt_at > now)
            ):
                return None
            updated = run.model_copy(update={
                "lease_until": lease_until, "submission_attempts": run.submission_attempts + 1,
                "next_attempt_at": None,
            })
            if self._replace(item, updated):
                return updated
        return None

    def list_runs_to_reconcile(self, limit: int) -> list[FlowRun]:
        found = []
        for item in self._index("lists", "RECONCILE", page_size=limit):
            found.append(stored_run(item))
            if len(found) >= limit:
                break
        return found

    def list_overdue_scheduled_runs(self, before: datetime, limit: int,
                                    since: datetime | None = None) -> list[FlowRun]:
        found: list[FlowRun] = []
        low = ts(since) if since else LOWEST
        for pool in self.list_all_work_pools():
            for count, item in enumerate(self._index("due", f"DUE#{pool.id}", low, ts(before), page_size=limit)):
                if count >= limit:
                    break
                found.append(stored_run(item))
        return sorted(found, key=lambda r: (r.scheduled_time, r.id))[:limit]

    # ------------------------------------------------------------------ run tokens
    def count_due_runs(self, pool_id: str, now: datetime, at_most: int = 1000) -> int:
        count = 0
        for _ in self._index("due", f"DUE#{pool_id}", LOWEST, ts(now) + HIGH, page_size=min(at_most, 1000)):
            count += 1
            if count >= at_most:
                break
        return count

    def earliest_scheduled_time(self, pool_id: str, after: datetime, before: datetime) -> datetime | None:
        first = next(iter(self._index("due", f"DUE#{pool_id}", ts(after) + HIGH, ts(before) + HIGH, page_size=1)),
                     None)
        return stored_run(first).scheduled_time if first else None

    def set_run_token(self, run_id: str, token_hash: str, expires_at: datetime) -> None:
        self.table.put(to_attrs({"PK": f"RUN#{run_id}", "SK": "TOKEN", "hash": token_hash,
                                 "expires": ts(expires_at)}))

    def get_run_token(self, run_id: str) -> tuple[str, datetime] | None:
        item = self.table.get(f"RUN#{run_id}", "TOKEN")
        if item is None:
            return None
        return item["hash"]["S"], from_ts(item["expires"]["S"])
