"""Flow-run storage for the SQLite backend, including the dispatcher's atomic claim."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import (
    ACTIVE_STATES,
    CollisionStrategy,
    FlowRun,
    FlowRunFilter,
    State,
    StateType,
    WorkPool,
    run_position,
)
from pushpool.control_plane.storage.base import ClaimResult
from pushpool.control_plane.storage.claim_rules import CANCEL_OTHER, Collisions, DueRun
from pushpool.control_plane.storage.records import from_ts, run_with_state, ts
from pushpool.control_plane.storage.sqlite_run_queries import select_runs

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

_ACTIVE_SQL = "('PENDING', 'RUNNING', 'CANCELLING')"
_RUN_COLUMNS = (
    "id", "workspace_id", "deployment_id", "pool_id", "queue_id", "state_type", "scheduled_time",
    "auto_scheduled", "idempotency_key", "infra_id", "lease_until", "next_attempt_at", "cleaned_up",
    "created", "flow_name", "doc",
)


def _run_keys(run: FlowRun) -> tuple:
    """The run's columns other than ``doc`` (in ``_RUN_COLUMNS`` order)."""
    return (
        run.id, run.workspace_id, run.deployment_id, run.pool_id, run.queue_id, run.state.type.value,
        ts(run.scheduled_time), int(run.auto_scheduled), run.idempotency_key, run.infra_id,
        ts(run.lease_until), ts(run.next_attempt_at), int(run.cleaned_up), ts(run.created), run.flow_name,
    )


def _run_row(run: FlowRun) -> tuple:
    return (*_run_keys(run), run.model_dump_json())


#: The order runs are counted in by state when a count is bounded: what needs attention first.
COUNTING_ORDER = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLING, StateType.RUNNING, StateType.PENDING,
                  StateType.SCHEDULED, StateType.CANCELLED, StateType.COMPLETED)
_INSERT_RUN = f"INSERT INTO flow_runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))})"
_INSERT_RUN_IF_ABSENT = f"{_INSERT_RUN} ON CONFLICT DO NOTHING"
_INSERT_FIRST_STATE = "INSERT INTO flow_run_states (run_id, seq, doc) VALUES (?, 1, ?)"
_INSERT_TAG = ("INSERT INTO run_tags (workspace_id, tag, scheduled_time, run_id) VALUES (?, ?, ?, ?) "
               "ON CONFLICT DO NOTHING")


def _tag_rows(run: FlowRun) -> list[tuple]:
    """The run's rows of ``run_tags`` (kept by the store as it writes a new run)."""
    when = ts(run.scheduled_time)
    return [(run.workspace_id, tag, when, run.id) for tag in run.tags]


class SqliteRunsMixin:
    """Flow-run half of :class:`~control_plane.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:
        _integrity_errors: tuple[type[Exception], ...]

        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    # ------------------------------------------------------------------ helpers
    def _load_run(self, conn: sqlite3.Connection, run_id: str) -> FlowRun | None:
        row = conn.execute("SELECT doc FROM flow_runs WHERE id = ?", (run_id,)).fetchone()
        return FlowRun.model_validate_json(row["doc"]) if row else None

    def _save_run(self, conn: sqlite3.Connection, run: FlowRun, before: FlowRun) -> None:
        """Write ``run`` over ``before`` (the stored version): only the columns that changed are set, since SQLite
        rewrites the entries of every index on a column an UPDATE sets, changed or not (nine on flow_runs)."""
        old, new = _run_keys(before), _run_keys(run)
        changed = [i for i in range(1, len(new)) if new[i] != old[i]]
        sets = "".join(f"{_RUN_COLUMNS[i]} = ?, " for i in changed)
        conn.execute(f"UPDATE flow_runs SET {sets}doc = ? WHERE id = ?",
                     (*(new[i] for i in changed), run.model_dump_json(), run.id))

    def _append_state(self, conn: sqlite3.Connection, run_id: str, state: State) -> None:
        conn.execute(
            "INSERT INTO flow_run_states (run_id, seq, doc) VALUES (?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM flow_run_states WHERE run_id = ?), ?)",
            (run_id, run_id, state.model_dump_json()),
        )

    @staticmethod
    def _delete_runs(conn: sqlite3.Connection, where: str, params: tuple) -> int:
        """Delete the runs matching ``where`` together with their state histories; return how many."""
        ids = [(r[0],) for r in conn.execute(f"SELECT id FROM flow_runs WHERE {where}", params)]
        conn.executemany("DELETE FROM flow_run_states WHERE run_id = ?", ids)
        conn.executemany("DELETE FROM task_runs WHERE flow_run_id = ?", ids)
        conn.executemany("DELETE FROM log_chunks WHERE flow_run_id = ?", ids)
        conn.executemany("DELETE FROM run_counters WHERE flow_run_id = ?", ids)
        conn.executemany("DELETE FROM child_runs WHERE parent_id = ?", ids)
        conn.executemany("DELETE FROM child_runs WHERE child_id = ?", ids)
        conn.executemany("DELETE FROM flow_runs WHERE id = ?", ids)
        return len(ids)

    def _delete_unstarted_runs(self, conn: sqlite3.Connection, column: str, value: str, workspace_id: str) -> None:
        self._delete_runs(conn, f"{column} = ? AND workspace_id = ? AND state_type = 'SCHEDULED'",
                          (value, workspace_id))

    # ------------------------------------------------------------------ create and read
    def create_flow_run(self, run: FlowRun) -> FlowRun:
        try:
            with self._write() as conn:
                conn.execute(_INSERT_RUN, _run_row(run))
                conn.execute(_INSERT_FIRST_STATE, (run.id, run.state.model_dump_json()))
                if run.tags:
                    conn.executemany(_INSERT_TAG, _tag_rows(run))
                if run.parent_flow_run_id is not None:
                    conn.execute("INSERT INTO child_runs (parent_id, child_id) VALUES (?, ?)",
                                 (run.parent_flow_run_id, run.id))
        except self._integrity_errors as exc:
            raise AlreadyExists(f"Flow run with idempotency key {run.idempotency_key!r} already exists") from exc
        return run

    def create_flow_runs_if_absent(self, runs: list[FlowRun]) -> int:
        created = 0
        with self._write() as conn:
            for run in runs:
                cur = conn.execute(_INSERT_RUN_IF_ABSENT, _run_row(run))
                if cur.rowcount:
                    created += 1
                    conn.execute(_INSERT_FIRST_STATE, (run.id, run.state.model_dump_json()))
                    if run.tags:
                        conn.executemany(_INSERT_TAG, _tag_rows(run))
        return created

    def get_flow_run(self, workspace_id: str | None, run_id: str) -> FlowRun | None:
        run = self._load_run(self._conn(), run_id)
        if run is None or (workspace_id is not None and run.workspace_id != workspace_id):
            return None
        return run

    def list_flow_runs(
        self, workspace_id: str, flt: FlowRunFilter, limit: int = 200, offset: int = 0
    ) -> list[FlowRun]:
        sql, params = select_runs(self._conn(), workspace_id, flt, limit, offset)
        rows = self._conn().execute(sql, params)
        return [FlowRun.model_validate_json(r["doc"]) for r in rows]

    def page_flow_runs(self, workspace_id: str, flt: FlowRunFilter,
                       limit: int = 50) -> tuple[list[FlowRun], str | None]:
        found = self.list_flow_runs(workspace_id, flt, limit=limit + 1)
        return found[:limit], (run_position(found[limit - 1]) if len(found) > limit else None)

    def count_flow_runs_by_state(self, workspace_id: str, after: datetime, before: datetime, *,
                                 at_most: int = 100_000) -> tuple[dict[StateType, int], bool]:
        # One index range per state (runs_by_workspace_state), the states that need attention first, so a count
        # cut short by ``at_most`` leaves out completed runs rather than failed ones.
        counts: dict[StateType, int] = {}
        left, conn = at_most, self._conn()
        for state in COUNTING_ORDER:
            found = conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM flow_runs WHERE workspace_id = ? AND state_type = ? "
                "AND scheduled_time >= ? AND scheduled_time < ? LIMIT ?) AS bounded",
                (workspace_id, state.value, ts(after), ts(before), left + 1)).fetchone()[0]
            if min(found, left):
                counts[state] = min(found, left)
            if found > left:
                return counts, False
            left -= found
        return counts, True

    def latest_auto_scheduled_time(self, deployment_id: str, now: datetime) -> tuple[int, datetime | None]:
        row = self._conn().execute(
            "SELECT SUM(CASE WHEN state_type = 'SCHEDULED' AND scheduled_time > ? THEN 1 ELSE 0 END), "
            "MAX(scheduled_time) FROM flow_runs "
            "WHERE deployment_id = ? AND auto_scheduled = 1",
            (ts(now), deployment_id),
        ).fetchone()
        return int(row[0] or 0), from_ts(row[1])

    def delete_scheduled_auto_runs(self, deployment_id: str, after: datetime) -> int:
        with self._write() as conn:
            return self._delete_runs(conn, "deployment_id = ? AND auto_scheduled = 1 AND state_type = 'SCHEDULED' "
                                           "AND scheduled_time >= ?", (deployment_id, ts(after)))

    def list_child_runs(self, parent_id: str, limit: int = 1000) -> list[FlowRun]:
        rows = self._conn().execute(
            "SELECT r.doc FROM child_runs c JOIN flow_runs r ON r.id = c.child_id WHERE c.parent_id = ? "
            "ORDER BY c.child_id LIMIT ?", (parent_id, limit))
        return [FlowRun.model_validate_json(r["doc"]) for r in rows]

    def count_child_runs(self, parent_id: str) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM child_runs WHERE parent_id = ?", (parent_id,)).fetchone()[0]

    def get_state_history(self, run_id: str) -> list[State]:
        rows = self._conn().execute("SELECT doc FROM flow_run_states WHERE run_id = ? ORDER BY seq", (run_id,))
        return [State.model_validate_json(r["doc"]) for r in rows]

    def delete_flow_run(self, workspace_id: str, run_id: str, *, expect: StateType) -> bool:
        if expect in ACTIVE_STATES:
            raise ValueError("a run holding concurrency slots cannot be deleted")
        with self._write() as conn:
            return self._delete_runs(conn, "id = ? AND workspace_id = ? AND state_type = ?",
                                     (run_id, workspace_id, expect.value)) == 1

    # ------------------------------------------------------------------ conditional writes
    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        expect: frozenset[StateType] | set[StateType] | None = None,
        changes: dict[str, Any] | None = None,
    ) -> FlowRun | None:
        with self._write() as conn:
            run = self._load_run(conn, run_id)
            if run is None or (expect is not None and run.state.type not in expect):
                return None
            updated = run_with_state(run, state, changes)
            self._save_run(conn, updated, run)
            self._append_state(conn, run_id, state)
        return updated

    def update_flow_run(
        self, run_id: str, changes: dict[str, Any], *, expect: dict[str, Any] | None = None
    ) -> FlowRun | None:
        with self._write() as conn:
            run = self._load_run(conn, run_id)
            if run is None:
                return None
            for field, value in (expect or {}).items():
                current = run.state.type if field == "state_type" else getattr(run, field)
                if current != value:
                    return None
            updated = run.model_copy(update=changes)
            self._save_run(conn, updated, run)
        return updated

    # ------------------------------------------------------------------ dispatch
    def claim_flow_runs(self, pool_id: str, now: datetime, lease_until: datetime, limit: int) -> ClaimResult:
        result = ClaimResult()
        with self._write() as conn:
            row = conn.execute("SELECT doc FROM work_pools WHERE id = ?", (pool_id,)).fetchone()
            if row is None:
                return result
            pool = WorkPool.model_validate_json(row["doc"])
            if pool.paused:
                return result
            pool_free = self._free(conn, "pool_id", pool_id, pool.concurrency_limit)
            queue_free = {
                q["id"]: self._free(conn, "queue_id", q["id"], q["concurrency_limit"])
                for q in conn.execute("SELECT id, concurrency_limit FROM work_queues WHERE pool_id = ?", (pool_id,))
            }
            deployment_free: dict[str, tuple[float, str]] = {}
            cutoff = ts(now + timedelta(seconds=pool.prefetch_seconds))
            collisions = Collisions()
            # Every due run is a candidate (a run a limit holds back must not hide the ones behind it), read in
            # pages of the four columns the claim decides by: a claimed or cancelled run leaves the SCHEDULED
            # runs, so the next page starts after the ones held back. A claim of 100 reads about 100 rows however
            # many are due, and parses a run's whole record only when it claims or cancels it.
            held_back, page = 0, max(limit, 50)
            while len(result.claimed) < limit and pool_free > 0:
                rows = conn.execute(
                    "SELECT r.id, r.deployment_id, r.queue_id, r.scheduled_time FROM flow_runs r "
                    "JOIN work_queues q ON q.id = r.queue_id "
                    "WHERE r.pool_id = ? AND r.state_type = 'SCHEDULED' AND r.scheduled_time <= ? AND q.paused = 0 "
                    "ORDER BY q.priority, r.scheduled_time, r.id LIMIT ? OFFSET ?",
                    (pool_id, cutoff, page, held_back),
                ).fetchall()
                for row in rows:
                    if len(result.claimed) >= limit or pool_free <= 0:
                        break
                    run = DueRun(row[0], row[1], row[2], from_ts(row[3]))
                    if queue_free.get(run.queue_id, 0) <= 0:
                        held_back += 1
                        continue
                    if run.deployment_id not in deployment_free:
                        deployment_free[run.deployment_id] = self._deployment_free(conn, run.deployment_id)
                    free, strategy = deployment_free[run.deployment_id]
                    if strategy == CANCEL_OTHER and run.deployment_id not in collisions.newest_due:
                        collisions.newest_due[run.deployment_id] = self._newest_due(conn, run, pool_id, cutoff)
                    outcome = collisions.superseded(run, strategy, now) or (
                        collisions.blocked(run, strategy, now) if free <= 0 else None)
                    if outcome is not None:
                        if outcome == "wait":
                            held_back += 1
                            continue
                        record = self._load_run(conn, run.id)
                        assert record is not None  # read in this transaction, which writes one at a time
                        cancelled = run_with_state(record, outcome, None)
                        self._save_run(conn, cancelled, record)
                        self._append_state(conn, run.id, outcome)
                        result.cancelled.append(cancelled)
                        continue
                    record = self._load_run(conn, run.id)
                    assert record is not None
                    state = State(type=StateType.PENDING, name="Pending", timestamp=now)
                    claimed = run_with_state(record, state, {
                        "lease_until": lease_until, "submission_attempts": record.submission_attempts + 1,
                    })
                    self._save_run(conn, claimed, record)
                    self._append_state(conn, run.id, state)
                    result.claimed.append(claimed)
                    pool_free -= 1
                    queue_free[run.queue_id] -= 1
                    deployment_free[run.deployment_id] = (free - 1, strategy)
                if len(rows) < page:
                    break
            result.displacing = collisions.displacing
        return result

    @staticmethod
    def _newest_due(conn: sqlite3.Connection, run: DueRun, pool_id: str, cutoff: str) -> tuple[datetime, str]:
        """(due time, id) of the newest run of ``run``'s deployment due in this claim (for ``cancel_other``)."""
        row = conn.execute(
            "SELECT r.scheduled_time, r.id FROM flow_runs r JOIN work_queues q ON q.id = r.queue_id "
            "WHERE r.deployment_id = ? AND r.state_type = 'SCHEDULED' AND r.scheduled_time <= ? AND r.pool_id = ? "
            "AND q.paused = 0 ORDER BY r.scheduled_time DESC, r.id DESC LIMIT 1",
            (run.deployment_id, cutoff, pool_id)).fetchone()
        return (from_ts(row[0]), row[1]) if row else (run.scheduled_time, run.id)

    @staticmethod
    def _used(conn: sqlite3.Connection, column: str, value: str) -> int:
        return conn.execute(
            f"SELECT COUNT(*) FROM flow_runs WHERE {column} = ? AND state_type IN {_ACTIVE_SQL}", (value,)
        ).fetchone()[0]

    @classmethod
    def _free(cls, conn: sqlite3.Connection, column: str, value: str, limit: int | None) -> float:
        return float("inf") if limit is None else limit - cls._used(conn, column, value)

    def count_active_runs(self, pool_id: str) -> int:
        return self._used(self._conn(), "pool_id", pool_id)

    def _deployment_free(self, conn: sqlite3.Connection, deployment_id: str) -> tuple[float, str]:
        # the columns hold the limits as the claim applies them (claim_rules.claim_limits, when saved)
        row = conn.execute(
            "SELECT concurrency_limit, collision_strategy FROM deployments WHERE id = ?", (deployment_id,)
        ).fetchone()
        if row is None:
            return float("inf"), CollisionStrategy.ENQUEUE.value
        return self._free(conn, "deployment_id", deployment_id, row["concurrency_limit"]), row["collision_strategy"]

    def list_submittable_runs(self, now: datetime, limit: int) -> list[FlowRun]:
        rows = self._conn().execute(
            "SELECT doc FROM flow_runs WHERE state_type = 'PENDING' AND infra_id IS NULL "
            "AND (lease_until IS NULL OR lease_until <= ?) AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
            "ORDER BY scheduled_time LIMIT ?",
            (ts(now), ts(now), limit),
        )
        return [FlowRun.model_validate_json(r["doc"]) for r in rows]

    def acquire_submission(self, run_id: str, now: datetime, lease_until: datetime) -> FlowRun | None:
        with self._write() as conn:
            run = self._load_run(conn, run_id)
            if (
                run is None
                or run.state.type is not StateType.PENDING
                or run.infra_id is not None
                or (run.lease_until is not None and run.lease_until > now)
                or (run.next_attempt_at is not None and run.next_attempt_at > now)
            ):
                return None
            updated = run.model_copy(update={
                "lease_until": lease_until, "submission_attempts": run.submission_attempts + 1,
                "next_attempt_at": None,
            })
            self._save_run(conn, updated, run)
        return updated

    def list_runs_to_reconcile(self, limit: int) -> list[FlowRun]:
        rows = self._conn().execute(
            f"SELECT doc FROM flow_runs WHERE infra_id IS NOT NULL AND (state_type IN {_ACTIVE_SQL} "
            "OR cleaned_up = 0 AND state_type IN ('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED')) "
            "ORDER BY scheduled_time LIMIT ?",
            (limit,),
        )
        return [FlowRun.model_validate_json(r["doc"]) for r in rows]

    def list_overdue_scheduled_runs(self, before: datetime, limit: int,
                                    since: datetime | None = None) -> list[FlowRun]:
        rows = self._conn().execute(
            "SELECT doc FROM flow_runs WHERE state_type = 'SCHEDULED' AND scheduled_time < ? "
            "AND scheduled_time >= ? ORDER BY scheduled_time LIMIT ?",
            (ts(before), ts(since) if since else "", limit),
        )
        return [FlowRun.model_validate_json(r["doc"]) for r in rows]

    # ------------------------------------------------------------------ run tokens
    def count_due_runs(self, pool_id: str, now: datetime, at_most: int = 1000) -> int:
        return self._conn().execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM flow_runs WHERE pool_id = ? AND state_type = 'SCHEDULED' "
            "AND scheduled_time <= ? LIMIT ?) AS bounded", (pool_id, ts(now), at_most)).fetchone()[0]

    def earliest_scheduled_time(self, pool_id: str, after: datetime, before: datetime) -> datetime | None:
        row = self._conn().execute(
            "SELECT MIN(scheduled_time) FROM flow_runs WHERE pool_id = ? AND state_type = 'SCHEDULED' "
            "AND scheduled_time > ? AND scheduled_time <= ?",
            (pool_id, ts(after), ts(before)),
        ).fetchone()
        return from_ts(row[0])

    def set_run_token(self, run_id: str, token_hash: str, expires_at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE flow_runs SET run_token_hash = ?, run_token_expires = ? WHERE id = ?",
                (token_hash, ts(expires_at), run_id),
            )

    def get_run_token(self, run_id: str) -> tuple[str, datetime] | None:
        row = self._conn().execute(
            "SELECT run_token_hash, run_token_expires FROM flow_runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], from_ts(row[1])
