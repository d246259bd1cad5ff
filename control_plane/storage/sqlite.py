"""The embedded storage backend: stdlib ``sqlite3`` in WAL mode.

One connection per thread; every write is one ``BEGIN IMMEDIATE`` transaction, so
writers (API threads, the tick thread, other processes on the same file) are
serialised by SQLite itself. Flow-run methods live in
:mod:`control_plane.storage.sqlite_runs`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.home import create_private_file
from pushpool.control_plane.models import (
    Actor,
    ActorKind,
    ApiKey,
    Block,
    Deployment,
    Membership,
    WorkPool,
    WorkQueue,
    Workspace,
)
from pushpool.control_plane.storage.base import DeploymentSummary, WouldWait
from pushpool.control_plane.storage.claim_rules import claim_limits
from pushpool.control_plane.storage.sqlite_checkpoints import FALLBACK_PAGES, Checkpointer
from pushpool.control_plane.storage.sqlite_events import EVENT_RELATED_BACKFILL, EVENTS_SCHEMA, SqliteEventsMixin
from pushpool.control_plane.storage.sqlite_reports import SqliteReportsMixin
from pushpool.control_plane.storage.sqlite_runs import SqliteRunsMixin
from pushpool.control_plane.storage.sqlite_schema import (
    FLOW_NAME_BACKFILL,
    FLOW_NAME_COLUMN,
    RUN_TAGS_BACKFILL,
    SCHEMA,
    SCHEMA_VERSION,
)
from pushpool.control_plane.storage.sqlite_variables import SqliteVariablesMixin

M = TypeVar("M", bound=BaseModel)
#: The errors a unique constraint raises (the PostgreSQL store, which shares this class's SQL, has its own).
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
BUSY_TIMEOUT_MS = 30_000


class SqliteStore(SqliteRunsMixin, SqliteReportsMixin, SqliteVariablesMixin, SqliteEventsMixin):
    _integrity_errors = INTEGRITY_ERRORS
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            create_private_file(Path(self.path))
        self._local = threading.local()
        #: Each thread's connection, with its thread: those of finished threads are closed (below).
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        # Writers of this process queue here, in order, instead of in SQLite's busy handler, which
        # sleeps up to 100 ms between tries (the tail latency under concurrent writes). Other
        # processes on the same file are still kept out by SQLite's own lock.
        self._write_lock = threading.Lock()
        self._checkpoints = Checkpointer(self.path) if self.path != ":memory:" else None
        self._init_schema()

    # ------------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=OFF")
            if self._checkpoints is not None:  # the checkpoint thread does it (sqlite_checkpoints.py)
                conn.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
            self._local.conn = conn
            with self._connections_lock:
                # Threads come and go (an event loop's worker threads, a test client's loop per request):
                # a finished thread's connection would otherwise stay open with its file descriptors.
                alive = []
                for thread, other in self._connections:
                    if thread.is_alive():
                        alive.append((thread, other))
                    else:
                        other.close()
                alive.append((threading.current_thread(), conn))
                self._connections = alive
        return conn

    def _init_schema(self) -> None:
        conn = self._conn()
        conn.executescript(SCHEMA + EVENTS_SCHEMA)
        if "flow_name" not in {row[1] for row in conn.execute("PRAGMA table_info(flow_runs)")}:
            with conn:  # a database made before the column: added and filled once
                conn.execute("ALTER TABLE flow_runs ADD COLUMN flow_name TEXT")
                conn.execute(FLOW_NAME_BACKFILL)
        conn.executescript(FLOW_NAME_COLUMN)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", (str(SCHEMA_VERSION),)
        )
        backfills = (("run_tags_indexed", RUN_TAGS_BACKFILL), ("event_related_indexed", EVENT_RELATED_BACKFILL))
        for key, backfill in backfills:
            if not conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone():
                with conn:  # an index table added in a later release, filled once from the rows it indexes
                    conn.execute(backfill)
                    conn.execute("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT DO NOTHING", (key,))

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Until its first write begins, this thread's work raises :class:`WouldWait` instead of waiting
        for another writer (of this process or another). The API's event loop runs a short route this
        way and hands it to the thread pool only when the database is busy."""
        self._local.nowait = True
        try:
            yield
        finally:
            self._local.nowait = False

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One writer transaction; rolled back whole on any error."""
        conn = self._conn()
        nowait = getattr(self._local, "nowait", False)
        if not self._write_lock.acquire(blocking=not nowait):
            raise WouldWait
        try:
            self._begin(conn, nowait)
            self._local.nowait = False  # a later write of the same work waits: never redo a committed one
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
                if self._checkpoints is not None:
                    self._checkpoints.wrote()
        finally:
            self._write_lock.release()

    @staticmethod
    def _begin(conn: sqlite3.Connection, nowait: bool) -> None:
        if not nowait:
            conn.execute("BEGIN IMMEDIATE")
            return
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise WouldWait from exc  # another process is writing
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _one(self, model: type[M], sql: str, params: tuple = ()) -> M | None:
        row = self._conn().execute(sql, params).fetchone()
        return model.model_validate_json(row["doc"]) if row else None

    def _many(self, model: type[M], sql: str, params: tuple = ()) -> list[M]:
        return [model.model_validate_json(r["doc"]) for r in self._conn().execute(sql, params)]

    def _insert(self, table: str, columns: dict, what: str) -> None:
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        try:
            with self._write() as conn:
                conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(columns.values()))
        except self._integrity_errors as exc:
            raise AlreadyExists(f"{what} already exists") from exc

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
        with self._connections_lock:
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------ meta
    def get_meta(self, name: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (f"app:{name}",)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                         "excluded.value", (f"app:{name}", value))

    def set_meta_once(self, name: str, value: str) -> str:
        with self._write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (f"app:{name}", value))
            return conn.execute("SELECT value FROM meta WHERE key = ?", (f"app:{name}",)).fetchone()[0]

    # ------------------------------------------------------------------ tenancy
    def create_workspace(self, workspace: Workspace) -> Workspace:
        self._insert(
            "workspaces",
            {"id": workspace.id, "name": workspace.name, "doc": workspace.model_dump_json()},
            f"Workspace {workspace.name!r}",
        )
        return workspace

    def get_workspace(self, id_or_name: str) -> Workspace | None:
        return self._one(Workspace, "SELECT doc FROM workspaces WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
                         (id_or_name,) * 3)  # an id wins over a name spelled like it

    def list_workspaces(self) -> list[Workspace]:
        return self._many(Workspace, "SELECT doc FROM workspaces ORDER BY name")

    def update_workspace(self, workspace: Workspace) -> None:
        with self._write() as conn:
            conn.execute("UPDATE workspaces SET doc = ? WHERE id = ?", (workspace.model_dump_json(), workspace.id))

    def create_actor(self, actor: Actor) -> Actor:
        self._insert(
            "actors",
            {"id": actor.id, "kind": actor.kind.value, "workspace_id": actor.workspace_id,
             "doc": actor.model_dump_json()},
            f"Actor {actor.name!r}",
        )
        return actor

    def get_actor(self, actor_id: str) -> Actor | None:
        return self._one(Actor, "SELECT doc FROM actors WHERE id = ?", (actor_id,))

    def list_service_accounts(self, workspace_id: str) -> list[Actor]:
        return self._many(
            Actor,
            "SELECT doc FROM actors WHERE workspace_id = ? AND kind = ?",
            (workspace_id, ActorKind.SERVICE_ACCOUNT.value),
        )

    def list_users(self) -> list[Actor]:
        return self._many(Actor, "SELECT doc FROM actors WHERE kind = ?", (ActorKind.USER.value,))

    def delete_actor(self, actor_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM actors WHERE id = ?", (actor_id,))
            conn.execute("DELETE FROM memberships WHERE actor_id = ?", (actor_id,))
            conn.execute("DELETE FROM api_keys WHERE actor_id = ?", (actor_id,))

    def set_membership(self, membership: Membership) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO memberships (workspace_id, actor_id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (workspace_id, actor_id) DO UPDATE SET doc = excluded.doc",
                (membership.workspace_id, membership.actor_id, membership.model_dump_json()),
            )

    def get_membership(self, workspace_id: str, actor_id: str) -> Membership | None:
        return self._one(
            Membership,
            "SELECT doc FROM memberships WHERE workspace_id = ? AND actor_id = ?",
            (workspace_id, actor_id),
        )

    def list_memberships(self, actor_id: str) -> list[Membership]:
        return self._many(Membership, "SELECT doc FROM memberships WHERE actor_id = ?", (actor_id,))

    def list_members(self, workspace_id: str) -> list[Membership]:
        return self._many(Membership, "SELECT doc FROM memberships WHERE workspace_id = ?", (workspace_id,))

    def delete_membership(self, workspace_id: str, actor_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM memberships WHERE workspace_id = ? AND actor_id = ?", (workspace_id, actor_id))

    def create_api_key(self, key: ApiKey) -> ApiKey:
        self._insert(
            "api_keys",
            {"id": key.id, "key_hash": key.key_hash, "actor_id": key.actor_id, "doc": key.model_dump_json()},
            "API key",
        )
        return key

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one(ApiKey, "SELECT doc FROM api_keys WHERE key_hash = ?", (key_hash,))

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._one(ApiKey, "SELECT doc FROM api_keys WHERE id = ?", (key_id,))

    def list_api_keys(self, actor_id: str) -> list[ApiKey]:
        return self._many(ApiKey, "SELECT doc FROM api_keys WHERE actor_id = ? ORDER BY id", (actor_id,))

    def update_api_key(self, key: ApiKey) -> None:
        with self._write() as conn:
            conn.execute("UPDATE api_keys SET doc = ? WHERE id = ?", (key.model_dump_json(), key.id))

    # ------------------------------------------------------------------ pools and queues
    @staticmethod
    def _queue_columns(queue: WorkQueue) -> dict:
        return {
            "id": queue.id, "workspace_id": queue.workspace_id, "pool_id": queue.pool_id,
            "name": queue.name, "priority": queue.priority, "paused": int(queue.paused),
            "concurrency_limit": queue.concurrency_limit, "doc": queue.model_dump_json(),
        }

    def create_work_pool(self, pool: WorkPool, default_queue: WorkQueue) -> WorkPool:
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO work_pools (id, workspace_id, name, doc) VALUES (?, ?, ?, ?)",
                    (pool.id, pool.workspace_id, pool.name, pool.model_dump_json()),
                )
                cols = self._queue_columns(default_queue)
                conn.execute(
                    f"INSERT INTO work_queues ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                    tuple(cols.values()),
                )
        except self._integrity_errors as exc:
            raise AlreadyExists(f"Work pool {pool.name!r} already exists") from exc
        return pool

    def get_work_pool(self, workspace_id: str, name: str) -> WorkPool | None:
        return self._one(
            WorkPool, "SELECT doc FROM work_pools WHERE workspace_id = ? AND name = ?", (workspace_id, name)
        )

    def get_work_pool_by_id(self, workspace_id: str, pool_id: str) -> WorkPool | None:
        return self._one(
            WorkPool, "SELECT doc FROM work_pools WHERE workspace_id = ? AND id = ?", (workspace_id, pool_id)
        )

    def list_work_pools(self, workspace_id: str) -> list[WorkPool]:
        return self._many(
            WorkPool, "SELECT doc FROM work_pools WHERE workspace_id = ? ORDER BY name", (workspace_id,)
        )

    def list_all_work_pools(self) -> list[WorkPool]:
        return self._many(WorkPool, "SELECT doc FROM work_pools ORDER BY workspace_id, name")

    def update_work_pool(self, pool: WorkPool) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE work_pools SET doc = ? WHERE id = ? AND workspace_id = ?",
                (pool.model_dump_json(), pool.id, pool.workspace_id),
            )

    def delete_work_pool(self, workspace_id: str, pool_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM work_pools WHERE id = ? AND workspace_id = ?", (pool_id, workspace_id))
            conn.execute("DELETE FROM work_queues WHERE pool_id = ? AND workspace_id = ?", (pool_id, workspace_id))
            self._delete_unstarted_runs(conn, "pool_id", pool_id, workspace_id)

    def create_work_queue(self, queue: WorkQueue) -> WorkQueue:
        self._insert("work_queues", self._queue_columns(queue), f"Work queue {queue.name!r}")
        return queue

    def get_work_queue(self, workspace_id: str, pool_id: str, name: str) -> WorkQueue | None:
        return self._one(
            WorkQueue,
            "SELECT doc FROM work_queues WHERE workspace_id = ? AND pool_id = ? AND name = ?",
            (workspace_id, pool_id, name),
        )

    def get_work_queue_by_id(self, workspace_id: str, queue_id: str) -> WorkQueue | None:
        return self._one(
            WorkQueue, "SELECT doc FROM work_queues WHERE workspace_id = ? AND id = ?", (workspace_id, queue_id)
        )

    def list_work_queues(self, workspace_id: str, pool_id: str) -> list[WorkQueue]:
        return self._many(
            WorkQueue,
            "SELECT doc FROM work_queues WHERE workspace_id = ? AND pool_id = ? ORDER BY priority, name",
            (workspace_id, pool_id),
        )

    def update_work_queue(self, queue: WorkQueue) -> None:
        cols = self._queue_columns(queue)
        sets = ", ".join(f"{c} = ?" for c in cols if c != "id")
        with self._write() as conn:
            conn.execute(
                f"UPDATE work_queues SET {sets} WHERE id = ?",
                tuple(v for c, v in cols.items() if c != "id") + (queue.id,),
            )

    def delete_work_queue(self, workspace_id: str, queue_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM work_queues WHERE id = ? AND workspace_id = ?", (queue_id, workspace_id))
            self._delete_unstarted_runs(conn, "queue_id", queue_id, workspace_id)

    # ------------------------------------------------------------------ blocks
    def create_block(self, block: Block) -> Block:
        self._insert(
            "blocks",
            {"id": block.id, "workspace_id": block.workspace_id, "name": block.name,
             "doc": block.model_dump_json()},
            f"Block {block.name!r}",
        )
        return block

    def get_block(self, workspace_id: str, name: str) -> Block | None:
        return self._one(Block, "SELECT doc FROM blocks WHERE workspace_id = ? AND name = ?", (workspace_id, name))

    def list_blocks(self, workspace_id: str) -> list[Block]:
        return self._many(Block, "SELECT doc FROM blocks WHERE workspace_id = ? ORDER BY name", (workspace_id,))

    def update_block(self, block: Block) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE blocks SET doc = ? WHERE id = ? AND workspace_id = ?",
                (block.model_dump_json(), block.id, block.workspace_id),
            )

    def delete_block(self, workspace_id: str, block_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM blocks WHERE id = ? AND workspace_id = ?", (block_id, workspace_id))

    # ------------------------------------------------------------------ deployments
    @staticmethod
    def _deployment_columns(d: Deployment) -> dict:
        scheduled = not d.paused and any(s.active for s in d.schedules)
        limit, strategy = claim_limits(d)  # as the claim applies them
        return {
            "id": d.id, "workspace_id": d.workspace_id, "flow_name": d.flow_name, "name": d.name,
            "pool_id": d.pool_id, "scheduled": int(scheduled), "concurrency_limit": limit,
            "collision_strategy": strategy, "doc": d.model_dump_json(),
        }

    def create_deployment(self, deployment: Deployment) -> Deployment:
        self._insert(
            "deployments", self._deployment_columns(deployment), f"Deployment {deployment.full_name!r}"
        )
        return deployment

    def get_deployment(self, workspace_id: str, deployment_id: str) -> Deployment | None:
        return self._one(
            Deployment, "SELECT doc FROM deployments WHERE workspace_id = ? AND id = ?",
            (workspace_id, deployment_id),
        )

    def get_deployment_by_name(self, workspace_id: str, flow_name: str, name: str) -> Deployment | None:
        return self._one(
            Deployment,
            "SELECT doc FROM deployments WHERE workspace_id = ? AND flow_name = ? AND name = ?",
            (workspace_id, flow_name, name),
        )

    def list_deployments(self, workspace_id: str, pool_id: str | None = None) -> list[Deployment]:
        if pool_id is None:
            return self._many(
                Deployment, "SELECT doc FROM deployments WHERE workspace_id = ? ORDER BY flow_name, name",
                (workspace_id,),
            )
        return self._many(
            Deployment,
            "SELECT doc FROM deployments WHERE workspace_id = ? AND pool_id = ? ORDER BY flow_name, name",
            (workspace_id, pool_id),
        )

    def list_deployment_summaries(self, workspace_id: str) -> list[DeploymentSummary]:
        rows = self._conn().execute(
            "SELECT id, flow_name, name, pool_id, json_extract(doc, '$.paused'), (SELECT COUNT(*) FROM "
            "json_each(doc, '$.schedules') WHERE json_extract(value, '$.active')) FROM deployments "
            "WHERE workspace_id = ? ORDER BY flow_name, name", (workspace_id,))
        return [DeploymentSummary(row[0], row[1], row[2], row[3], bool(row[4]), row[5]) for row in rows]

    def list_scheduled_deployments(self) -> list[Deployment]:
        return self._many(Deployment, "SELECT doc FROM deployments WHERE scheduled = 1")

    def update_deployment(self, deployment: Deployment) -> None:
        cols = self._deployment_columns(deployment)
        sets = ", ".join(f"{c} = ?" for c in cols if c != "id")
        with self._write() as conn:
            conn.execute(
                f"UPDATE deployments SET {sets} WHERE id = ?",
                tuple(v for c, v in cols.items() if c != "id") + (deployment.id,),
            )

    def delete_deployment(self, workspace_id: str, deployment_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM deployments WHERE id = ? AND workspace_id = ?", (deployment_id, workspace_id)
            )
            self._delete_unstarted_runs(conn, "deployment_id", deployment_id, workspace_id)
