"""SQLite storage of task runs (mixed into ``SqliteStore``): one row per task run, kept with its flow run."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from pushpool.control_plane.models import TaskRun

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class SqliteTaskRunsMixin:
    """Task-run half of :class:`~control_plane.storage.sqlite.SqliteStore`."""

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
