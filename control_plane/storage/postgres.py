"""The PostgreSQL storage backend: the SQLite store's logic and SQL over psycopg 3 and a connection pool.

Why it can share the SQLite store's code: the tables are the same (``postgres_schema``), the statements are
portable (upserts with ``ON CONFLICT``, no SQLite functions outside the few methods overridden below), and the
one difference left — ``?`` placeholders — is translated once per statement (:func:`to_postgres`). What the
SQLite store gets from SQLite's single writer, this one gets from PostgreSQL: every write transaction takes one
transaction-level advisory lock first, so writes of all replicas run one after another, exactly as a SQLite
file's writers do. So a claim, a conditional state change or a limit check reads and writes with nothing
between them on any replica: disjoint claims and limits that hold follow from the same code that makes them
hold on SQLite (the store contract suites run on both). Reads take no lock and see committed data.

Connections come from a ``psycopg_pool`` pool (``PUSHPOOL_DATABASE_POOL_SIZE``, default 10 per process): a
read borrows one for its statement, a write for its transaction.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pushpool.control_plane.errors import ConfigurationError
from pushpool.control_plane.event_models import RESOURCE_ID
from pushpool.control_plane.storage.base import DeploymentSummary
from pushpool.control_plane.storage.postgres_schema import LATEST, MIGRATIONS
from pushpool.control_plane.storage.sqlite import SqliteStore

#: The advisory lock every write transaction takes (any constant the application owns: "pushpool" in ASCII).
WRITE_LOCK = 0x70757368706F6F6C
#: The advisory lock migrations are applied under.
MIGRATION_LOCK = WRITE_LOCK + 1


@functools.lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    """``sql`` with psycopg's placeholders: ``?`` outside string literals becomes ``%s`` and a literal ``%`` is
    doubled. SQLite's ``LIKE`` ignores ASCII case, so it becomes ``ILIKE`` (the same matches on both); SQLite's
    planner hints are dropped."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    translated = re.sub(r"\bLIKE\b", "ILIKE", "".join(out))
    # SQLite's planner hints: "CROSS JOIN ... ON" (keep this join order) is a plain join here, and "+column"
    # (use another index) is not an operator on text
    translated = re.sub(r"\bCROSS JOIN\b", "JOIN", translated)
    return re.sub(r"(?<![\w)])\+(?=[a-z_]+\.[a-z_]+\b)", "", translated)


class Row(tuple):
    """A result row read by position or by column name, like ``sqlite3.Row``."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {column.name: index for index, column in enumerate(cursor.description or [])}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


class Result:
    """What a statement gave, read whole (the connection goes back to the pool at once): rows and rowcount."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


class Connection:
    """The part of ``sqlite3.Connection`` the shared SQL code uses, over one psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cursor = self._conn.execute(to_postgres(sql), tuple(params))
        return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Result:
        rows = [tuple(row) for row in rows]
        if not rows:
            return Result([], 0)
        with self._conn.cursor() as cursor:
            cursor.executemany(to_postgres(sql), rows)
            return Result([], cursor.rowcount)


class PooledReads:
    """A connection for reads outside a transaction: each statement borrows a pooled connection for itself."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        with self._pool.connection() as conn:
            return Connection(conn).execute(sql, params)


class PostgresStore(SqliteStore):
    def __init__(self, url: str, *, pool_size: int = 10, migrate: bool = True, check_version: bool = True,
                 connect_timeout: float = 30) -> None:
        try:
            import psycopg
            from psycopg import errors
            from psycopg_pool import ConnectionPool
        except ModuleNotFoundError:  # pragma: no cover - the extra is missing
            raise ConfigurationError("PUSHPOOL_STORE=postgresql needs the 'postgresql' extra: "
                                     "pip install 'pushpool[postgresql]'") from None
        self.url = url
        self._integrity_errors = (errors.IntegrityError,)
        self._local = threading.local()
        self._pool = ConnectionPool(url, min_size=1, max_size=max(2, pool_size), open=False,
                                    kwargs={"autocommit": True, "row_factory": _row_factory},
                                    configure=_configure, name="pushpool")
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg.Error as exc:
            raise ConfigurationError(f"cannot connect to PostgreSQL at {redacted(url)}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the pool's own timeout
            raise ConfigurationError(f"cannot connect to PostgreSQL at {redacted(url)} "
                                     f"({type(exc).__name__}: {exc})") from None
        self._reads = PooledReads(self._pool)
        if migrate:
            self.migrate()
        elif check_version and self.schema_version() < LATEST:
            raise ConfigurationError(f"the PostgreSQL database at {redacted(url)} has schema version "
                                     f"{self.schema_version()}, this pushpool needs {LATEST}: run "
                                     "`pushpool server migrate`")

    # ------------------------------------------------------------------ schema
    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
            if exists is None:
                return 0
            return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, in order; safe when replicas start together."""
        applied: list[int] = []
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                             "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
                for version, description, sql in MIGRATIONS:
                    if version in done:
                        continue
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                                     (version, description))
                    applied.append(version)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return applied

    def _init_schema(self) -> None:  # pragma: no cover - the SQLite store's; migrate() here
        raise NotImplementedError

    # ------------------------------------------------------------------ connections
    def _conn(self) -> Any:
        """In a write transaction, its connection (the transaction's reads see its writes); else pooled reads."""
        return getattr(self._local, "tx", None) or self._reads

    #: Every statement is a network call: the API runs routes in its thread pool, never on the event loop
    #: (api/offload.py), so there is no "do not wait" mode here.
    without_waiting = None  # type: ignore[assignment]
    #: ... and the API's access check reads in the thread pool too (api/deps.py).
    reads_on_event_loop = False

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One writer transaction, after every other replica's and thread's; rolled back whole on any error."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            self._local.tx = Connection(conn)
            try:
                yield self._local.tx
            finally:
                self._local.tx = None

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ what SQLite and PostgreSQL spell apart
    def list_deployment_summaries(self, workspace_id: str) -> list[DeploymentSummary]:
        rows = self._conn().execute(
            "SELECT id, flow_name, name, pool_id, COALESCE((doc::jsonb ->> 'paused')::boolean, false), "
            "(SELECT COUNT(*) FROM jsonb_array_elements(doc::jsonb -> 'schedules') s "
            "WHERE COALESCE((s ->> 'active')::boolean, false)) FROM deployments "
            "WHERE workspace_id = ? ORDER BY flow_name, name", (workspace_id,))
        return [DeploymentSummary(row[0], row[1], row[2], row[3], bool(row[4]), int(row[5])) for row in rows]

    def _related_pattern_clause(self) -> str:
        return ("EXISTS (SELECT 1 FROM jsonb_array_elements(e.doc::jsonb -> 'related') r "
                f"WHERE r ->> '{RESOURCE_ID}' LIKE ? ESCAPE '\\')")

    def _delete_old_events(self, conn: Any, before: str, limit: int) -> int:
        return conn.execute("DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE occurred < ? LIMIT ?)",
                            (before, limit)).rowcount


def _configure(conn: Any) -> None:
    """Python booleans go in as 0/1, as SQLite stores them (the shared schema keeps flags in INTEGER columns)."""
    from psycopg.adapt import Dumper
    from psycopg.postgres import types

    class BoolAsInt(Dumper):
        oid = types["int4"].oid

        def dump(self, obj: bool) -> bytes:
            return b"1" if obj else b"0"

    conn.adapters.register_dumper(bool, BoolAsInt)


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


__all__ = ["PostgresStore", "redacted", "to_postgres"]
