"""SQLite storage of what a run's runner reports (mixed into ``SqliteStore``): task runs, one row each, and log
chunks, one row per batch of lines; both are kept with their flow run, logs also until their retention ends."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from pushpool.control_plane.models import LogChunk, TaskRun
from pushpool.control_plane.storage.records import ts

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class SqliteReportsMixin:
    """Task runs and logs of :class:`~control_plane.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:
        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    @staticmethod
    def _add_to_counter(conn: sqlite3.Connection, flow_run_id: str, name: str, amount: int, at_most: int) -> bool:
        """Add ``amount`` to one of a run's counters (0 when missing) unless the sum would pass ``at_most``;
        in the caller's transaction (the twin of DynamoDB's ``Table.update_counter``)."""
        row = conn.execute("SELECT value FROM run_counters WHERE flow_run_id = ? AND name = ?",
                           (flow_run_id, name)).fetchone()
        total = (row[0] if row else 0) + amount
        if total > at_most:
            return False
        conn.execute("INSERT INTO run_counters (flow_run_id, name, value) VALUES (?, ?, ?) "
                     "ON CONFLICT (flow_run_id, name) DO UPDATE SET value = excluded.value",
                     (flow_run_id, name, total))
        return True

    def save_task_runs(self, flow_run_id: str, task_runs: list[TaskRun], *, max_reports: int) -> bool:
        with self._write() as conn:
            if not self._add_to_counter(conn, flow_run_id, "task_run_reports", len(task_runs), max_reports):
                return False
            conn.executemany("INSERT INTO task_runs (flow_run_id, id, doc) VALUES (?, ?, ?) "
                             "ON CONFLICT (flow_run_id, id) DO UPDATE SET doc = excluded.doc",
                             [(flow_run_id, t.id, t.model_dump_json()) for t in task_runs])
        return True

    def list_task_runs(self, flow_run_id: str, *, after: str | None = None, limit: int = 1000) -> list[TaskRun]:
        rows = self._conn().execute(
            "SELECT doc FROM task_runs WHERE flow_run_id = ? AND id > ? ORDER BY id LIMIT ?",
            (flow_run_id, after or "", limit))
        return [TaskRun.model_validate_json(r["doc"]) for r in rows]

    # ------------------------------------------------------------------ logs
    def append_log_chunk(self, chunk: LogChunk, *, size: int, max_bytes: int, keep_until: datetime) -> bool:
        with self._write() as conn:
            if not self._add_to_counter(conn, chunk.flow_run_id, "log_bytes", size, max_bytes):
                return False
            conn.execute("INSERT INTO log_chunks (flow_run_id, seq, keep_until, doc) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (flow_run_id, seq) DO UPDATE SET keep_until = excluded.keep_until, "
                         "doc = excluded.doc",
                         (chunk.flow_run_id, chunk.seq, ts(keep_until), chunk.model_dump_json()))
        return True

    def list_log_chunks(self, flow_run_id: str, *, after: int | None = None, limit: int = 100,
                        newest_first: bool = False) -> list[LogChunk]:
        order = "DESC" if newest_first else "ASC"
        rows = self._conn().execute(
            f"SELECT doc FROM log_chunks WHERE flow_run_id = ? AND seq > ? ORDER BY seq {order} LIMIT ?",
            (flow_run_id, -1 if after is None else after, limit))
        return [LogChunk.model_validate_json(r["doc"]) for r in rows]

    def delete_expired_log_chunks(self, now: datetime, limit: int = 5000) -> int:
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM log_chunks WHERE (flow_run_id, seq) IN "
                "(SELECT flow_run_id, seq FROM log_chunks WHERE keep_until < ? LIMIT ?)",
                (ts(now), limit)).rowcount
