"""SQLite storage of workspace variables and tag concurrency limits (mixed into ``SqliteStore``)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, TypeVar

from pushpool.control_plane.models import ConcurrencyLimit, Variable

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)


class SqliteVariablesMixin:
    """Variables and tag concurrency limits of :class:`~control_plane.storage.sqlite.SqliteStore`."""

    if TYPE_CHECKING:
        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _one(self, model: type[M], sql: str, params: tuple = ()) -> M | None: ...
        def _many(self, model: type[M], sql: str, params: tuple = ()) -> list[M]: ...

    def put_variable(self, variable: Variable) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO variables (workspace_id, name, doc) VALUES (?, ?, ?)",
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
                conn.execute("INSERT OR REPLACE INTO concurrency_limits (workspace_id, tag, version, doc) "
                             "VALUES (?, ?, ?, ?)", (limit.workspace_id, limit.tag, saved.version,
                                                     saved.model_dump_json()))
        return True

    def delete_concurrency_limit(self, workspace_id: str, tag: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM concurrency_limits WHERE workspace_id = ? AND tag = ?",
                                (workspace_id, tag)).rowcount == 1
