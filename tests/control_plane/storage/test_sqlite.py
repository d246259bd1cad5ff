"""The store contract against the SQLite backend, plus SQLite specifics."""

from __future__ import annotations

import pytest

from pushpool.control_plane.storage.sqlite import SqliteStore
from tests.control_plane.storage.contract import StoreContract
from tests.control_plane.storage.contract_backfills import BackfillsContract
from tests.control_plane.storage.contract_claims import ClaimsContract
from tests.control_plane.storage.contract_events import EventsContract
from tests.control_plane.storage.contract_reports import ReportsContract


class TestSqliteStore(StoreContract, ClaimsContract, ReportsContract, EventsContract, BackfillsContract):
    @pytest.fixture
    def db_path(self, tmp_path):
        return tmp_path / "contract.db"

    @pytest.fixture
    def contract_store(self, db_path):
        store = SqliteStore(db_path)
        yield store
        store.close()

    @pytest.fixture
    def store_factory(self, db_path):
        made: list[SqliteStore] = []

        def make() -> SqliteStore:
            made.append(SqliteStore(db_path))
            return made[-1]

        yield make
        for store in made:
            store.close()


def test_wal_mode_is_on(tmp_path):
    store = SqliteStore(tmp_path / "x.db")
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def _meta_writes(store: SqliteStore) -> tuple:
    return tuple(store._conn().execute("SELECT key FROM meta ORDER BY key").fetchall())


def test_a_write_that_must_not_wait_gives_way_to_a_writer_of_this_process(tmp_path):
    import threading

    from pushpool.control_plane.storage.base import WouldWait

    store = SqliteStore(tmp_path / "x.db")
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store._write():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(5)
    try:
        before = _meta_writes(store)
        with pytest.raises(WouldWait), store.without_waiting():
            store.set_meta("k", "v")
        assert _meta_writes(store) == before  # nothing written
    finally:
        release.set()
        thread.join()
    with store.without_waiting():
        store.set_meta("k", "v")  # free again: done at once
    assert store.get_meta("k") == "v"
    store.close()


def test_a_write_that_must_not_wait_gives_way_to_another_process(tmp_path):
    from pushpool.control_plane.storage.base import WouldWait

    ours, theirs = SqliteStore(tmp_path / "x.db"), SqliteStore(tmp_path / "x.db")  # two processes' views
    other = theirs._conn()
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WouldWait), ours.without_waiting():
            ours.set_meta("k", "v")
    finally:
        other.execute("ROLLBACK")
    assert ours.get_meta("k") is None
    # The busy timeout is back for ordinary writes after the attempt.
    assert ours._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    ours.close()
    theirs.close()


def test_only_the_first_write_of_a_piece_of_work_may_give_way(tmp_path):
    """Work that already committed a write is never handed over to be redone: later writes wait."""
    import threading
    import time

    store = SqliteStore(tmp_path / "x.db")
    waited: list[float] = []

    with store.without_waiting():
        store.set_meta("first", "1")
        holder_started = threading.Event()

        def hold() -> None:
            with store._write():
                holder_started.set()
                time.sleep(0.2)

        thread = threading.Thread(target=hold)
        thread.start()
        holder_started.wait(5)
        started = time.monotonic()
        store.set_meta("second", "2")  # waits for the holder instead of raising
        waited.append(time.monotonic() - started)
        thread.join()
    assert store.get_meta("second") == "2" and waited[0] >= 0.1
    store.close()


def test_connections_of_finished_threads_are_closed(tmp_path):
    import sqlite3
    import threading

    store = SqliteStore(tmp_path / "x.db")
    opened = []

    def read() -> None:
        store.get_meta("x")
        opened.append(store._local.conn)

    for _ in range(20):  # like a test client's event loop thread per request
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    store.get_meta("x")
    assert len(store._connections) <= 2
    with pytest.raises(sqlite3.ProgrammingError):  # closed, file descriptors released
        opened[0].execute("SELECT 1")
    store.close()


def test_events_written_before_the_related_index_are_indexed_once_on_open(tmp_path):
    """A database from before ``event_related`` existed: its events' related resources are indexed when a store
    first opens it, so a run's page still finds the events about the run."""
    from datetime import UTC, datetime

    from pushpool.control_plane.event_models import Event, EventFilter
    from pushpool.control_plane.models import Workspace

    at = datetime(2026, 6, 1, tzinfo=UTC)
    store = SqliteStore(tmp_path / "x.db")
    ws = store.create_workspace(Workspace(name="ws", created=at))
    about = Event(workspace_id=ws.id, occurred=at, received=at, event="pushpool.infrastructure.started",
                  resource={"pushpool.resource.id": "pushpool.infrastructure.i1"},
                  related=[{"pushpool.resource.id": "pushpool.flow-run.r1", "pushpool.resource.role": "flow-run"}])
    store.append_events([about])
    with store._write() as conn:  # as an older release left it
        conn.execute("DROP TABLE event_related")
        conn.execute("DELETE FROM meta WHERE key IN ('event_related_indexed', 'run_tags_indexed')")
    store.close()

    reopened = SqliteStore(tmp_path / "x.db")
    found = reopened.list_events(ws.id, EventFilter(related_id="pushpool.flow-run.r1"))
    assert [e.id for e in found] == [about.id]
    assert reopened._conn().execute("SELECT COUNT(*) FROM event_related").fetchone()[0] == 1
    reopened.close()


def test_runs_written_before_the_flow_name_column_are_found_by_flow_after_open(tmp_path):
    """A database from before ``flow_runs.flow_name`` (its flow filter was an index on the JSON): the column is
    added and filled once when a store first opens it, and the old index is gone."""
    from pushpool.control_plane.models import FlowRunFilter
    from tests.control_plane.storage.contract import World

    store = SqliteStore(tmp_path / "x.db")
    world = World(store)
    pool, queue = world.pool()
    dep = world.deployment(pool, queue)
    etl, other = world.run(dep, flow_name="etl", tags=["nightly"]), world.run(dep, flow_name="other")
    with store._write() as conn:  # as an older release left it
        conn.execute("DROP INDEX runs_by_flow_name")
        conn.execute("ALTER TABLE flow_runs DROP COLUMN flow_name")
        conn.execute("CREATE INDEX runs_by_flow ON flow_runs "
                     "(workspace_id, json_extract(doc, '$.flow_name'), scheduled_time, id)")
    store.close()

    reopened = SqliteStore(tmp_path / "x.db")
    assert [r.id for r in reopened.list_flow_runs(world.ws.id, FlowRunFilter(flow_name="etl"))] == [etl.id]
    assert [r.id for r in reopened.list_flow_runs(world.ws.id, FlowRunFilter(flow_name="other"))] == [other.id]
    assert [r.id for r in reopened.list_flow_runs(world.ws.id, FlowRunFilter(tags=["nightly"]))] == [etl.id]
    indexes = {row[0] for row in reopened._conn().execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "runs_by_flow_name" in indexes and "runs_by_flow" not in indexes
    reopened.close()


def test_the_log_is_checkpointed_by_a_thread_of_its_own_not_by_the_writes(tmp_path):
    """Writes leave the write-ahead log to the checkpoint thread (a commit no longer copies it back itself), which
    copies it into the database file soon after."""
    import os
    import time

    from pushpool.control_plane.storage.sqlite_checkpoints import FALLBACK_PAGES
    from tests.control_plane.storage.contract import World

    store = SqliteStore(tmp_path / "x.db")
    assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == FALLBACK_PAGES
    store._checkpoints.interval = 0.2
    world = World(store)
    pool, queue = world.pool()
    dep = world.deployment(pool, queue)
    before = os.path.getsize(tmp_path / "x.db")
    for _ in range(300):
        world.run(dep)
    deadline = time.monotonic() + 10
    while os.path.getsize(tmp_path / "x.db") <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.getsize(tmp_path / "x.db") > before  # the runs reached the database file
    store.close()
    assert not store._checkpoints._thread.is_alive()
