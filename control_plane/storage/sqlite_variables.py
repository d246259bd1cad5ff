"""SQLite storage of workspace variables, tag concurrency limits and backfills (mixed into ``SqliteStore``)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, TypeVar

from pushpool.control_plane.backfill_models import Backfill, BackfillState
from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import ConcurrencyLimit, Variable

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)


class SqliteVariablesMixin:
    """Variables and tag concurrency limits of :class:`~control_plane.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:
        _integrity_errors: tuple[type[Exception], ...]

        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _one(self, model: type[M], sql: str, params: tuple = ()) -> M | None: ...
        def _many(self, model: type[M], sql: str, params: tuple = ()) -> list[M]: ...

    def put_variable(self, variable: Variable) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO variables (workspace_id, name, doc) VALUES (?, ?, ?) "
                         "ON CONFLICT (workspace_id, name) DO UPDATE SET doc = excluded.doc",
                         (variable.workspace_id, variable.name, variable.model_dump_json()))

    def get_variable(self, workspace_id: str, name: str) -> Variable | None:
        return self._one(Variable, "SELECT doc FROM variables WHERE workspace_id = ? AND name = ?",
                         (workspace_id, name))

    def list_variables(self, workspace_id: str) -> list[Variable]:
        return self._many(Variable, "SELECT doc FROM variables WHERE workspace_id = ? ORDER BY name", (workspace_id,))

    def count_variables(self, workspace_id: str) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM variables WHERE workspace_id = ?",
                                    (workspace_id,)).fetchone()[0]

    def delete_variable(self, workspace_id: str, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM variables WHERE workspace_id = ? AND name = ?",
                                (workspace_id, name)).rowcount == 1

    # ------------------------------------------------------------------ tag concurrency limits
    def get_concurrency_limit(self, workspace_id: str, tag: str) -> ConcurrencyLimit | None:
        return self._one(ConcurrencyLimit, "SELECT doc FROM concurrency_limits WHERE workspace_id = ? AND tag = ?",
                         (workspace_id, tag))

    def list_concurrency_limits(self, workspace_id: str) -> list[ConcurrencyLimit]:
        return self._many(ConcurrencyLimit, "SELECT doc FROM concurrency_limits WHERE workspace_id = ? ORDER BY tag",
                          (workspace_id,))

    def save_concurrency_limits(self, limits: list[ConcurrencyLimit]) -> bool:
        with self._write() as conn:
            for limit in limits:  # each was read at ``version``; any other write meanwhile fails them all
                row = conn.execute("SELECT version FROM concurrency_limits WHERE workspace_id = ? AND tag = ?",
                                   (limit.workspace_id, limit.tag)).fetchone()
                if (row[0] if row else 0) != limit.version:
                    return False
            for limit in limits:
                saved = limit.model_copy(update={"version": limit.version + 1})
                conn.execute("INSERT INTO concurrency_limits (workspace_id, tag, version, doc) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (workspace_id, tag) DO UPDATE SET version = excluded.version, "
                             "doc = excluded.doc", (limit.workspace_id, limit.tag, saved.version,
                                                     saved.model_dump_json()))
        return True

    def delete_concurrency_limit(self, workspace_id: str, tag: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM concurrency_limits WHERE workspace_id = ? AND tag = ?",
                                (workspace_id, tag)).rowcount == 1

    # ------------------------------------------------------------------ backfills
    def create_backfill(self, backfill: Backfill) -> Backfill:
        with self._write() as conn:
            try:
                conn.execute("INSERT INTO backfills (id, workspace_id, deployment_id, state, version, doc) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (backfill.id, backfill.workspace_id, backfill.deployment_id,
                                                           backfill.state.value, backfill.version,
                                                           backfill.model_dump_json()))
            except self._integrity_errors as exc:
                raise AlreadyExists("Backfill already exists") from exc
        return backfill

    def get_backfill(self, workspace_id: str, backfill_id: str) -> Backfill | None:
        return self._one(Backfill, "SELECT doc FROM backfills WHERE id = ? AND workspace_id = ?",
                         (backfill_id, workspace_id))

    def list_backfills(self, workspace_id: str, deployment_id: str | None = None, limit: int = 100) -> list[Backfill]:
        if deployment_id is None:
            return self._many(Backfill, "SELECT doc FROM backfills WHERE workspace_id = ? ORDER BY id DESC LIMIT ?",
                              (workspace_id, limit))
        return self._many(Backfill, "SELECT doc FROM backfills WHERE workspace_id = ? AND deployment_id = ? "
                                    "ORDER BY id DESC LIMIT ?", (workspace_id, deployment_id, limit))

    def list_running_backfills(self, limit: int = 100) -> list[Backfill]:
        return self._many(Backfill, "SELECT doc FROM backfills WHERE state = ? ORDER BY id LIMIT ?",
                          (BackfillState.RUNNING.value, limit))

    def save_backfill(self, backfill: Backfill) -> Backfill | None:
        saved = backfill.model_copy(update={"version": backfill.version + 1})
        with self._write() as conn:
            changed = conn.execute("UPDATE backfills SET state = ?, version = ?, doc = ? WHERE id = ? AND version = ?",
                                   (saved.state.value, saved.version, saved.model_dump_json(), backfill.id,
                                    backfill.version)).rowcount
        return saved if changed == 1 else None
