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

    def save_task_runs(self, flow_run_id: str, task_runs: list[TaskRun], *, max_reports: int) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT reports FROM task_run_reports WHERE flow_run_id = ?", (flow_run_id,)).fetchone()
            reports = (row[0] if row else 0) + len(task_runs)
            if reports > max_reports:
                return False
            conn.execute("INSERT OR REPLACE INTO task_run_reports (flow_run_id, reports) VALUES (?, ?)",
                         (flow_run_id, reports))
            conn.executemany("INSERT OR REPLACE INTO task_runs (flow_run_id, id, doc) VALUES (?, ?, ?)",
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
            row = conn.execute("SELECT bytes FROM log_bytes WHERE flow_run_id = ?", (chunk.flow_run_id,)).fetchone()
            total = (row[0] if row else 0) + size
            if total > max_bytes:
                return False
            conn.execute("INSERT OR REPLACE INTO log_bytes (flow_run_id, bytes) VALUES (?, ?)",
                         (chunk.flow_run_id, total))
            conn.execute("INSERT OR REPLACE INTO log_chunks (flow_run_id, seq, keep_until, doc) VALUES (?, ?, ?, ?)",
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
