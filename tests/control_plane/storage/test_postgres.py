"""The store contract against a real PostgreSQL (tests/postgres_fixtures.py), plus PostgreSQL specifics."""

from __future__ import annotations

import pytest

from tests.control_plane.storage.contract import StoreContract
from tests.control_plane.storage.contract_backfills import BackfillsContract
from tests.control_plane.storage.contract_claims import ClaimsContract
from tests.control_plane.storage.contract_events import EventsContract
from tests.control_plane.storage.contract_reports import ReportsContract

pytest.importorskip("psycopg")
from pushpool.control_plane.storage.postgres import PostgresStore, to_postgres  # noqa: E402


class TestPostgresStore(StoreContract, ClaimsContract, ReportsContract, EventsContract, BackfillsContract):
    @pytest.fixture
    def contract_store(self, postgres_url):
        store = PostgresStore(postgres_url)
        yield store
        store.close()

    @pytest.fixture
    def store_factory(self, postgres_url):
        made: list[PostgresStore] = []

        def make() -> PostgresStore:
            made.append(PostgresStore(postgres_url))
            return made[-1]

        yield make
        for store in made:
            store.close()


def test_placeholders_are_translated_outside_string_literals():
    assert to_postgres("SELECT doc FROM t WHERE a = ? AND b LIKE ? ESCAPE '\\'") == \
        "SELECT doc FROM t WHERE a = %s AND b ILIKE %s ESCAPE '\\'"
    assert to_postgres("SELECT '?', 'it''s 5%' WHERE x = ?") == "SELECT '?', 'it''s 5%%' WHERE x = %s"
    assert to_postgres("WHERE +r.workspace_id = ? AND seq + 1 > 2") == "WHERE r.workspace_id = %s AND seq + 1 > 2"


def test_a_url_in_a_message_hides_its_password():
    from pushpool.control_plane.storage.postgres import redacted

    assert redacted("postgresql://app:s3cret@db:5432/pushpool") == "postgresql://app:***@db:5432/pushpool"
    assert redacted("postgresql://app@db/pushpool") == "postgresql://app@db/pushpool"


def test_migrations_run_once_when_replicas_start_together(postgres_url):
    import threading

    from pushpool.control_plane.storage.postgres_schema import LATEST

    stores, errors = [], []

    def start() -> None:
        try:
            stores.append(PostgresStore(postgres_url))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 4
    assert all(store.schema_version() == LATEST for store in stores)
    assert stores[0].migrate() == []  # nothing left to apply
    for store in stores:
        store.close()


def test_an_unreachable_database_is_one_clear_error():
    from pushpool.control_plane.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"cannot connect to PostgreSQL at postgresql://u:\*\*\*@127.0.0.1:9/x"):
        PostgresStore("postgresql://u:pw@127.0.0.1:9/x", connect_timeout=1)


def test_the_api_runs_routes_off_the_event_loop(postgres_url):
    """Every statement is a network call: no route of the API may block its event loop on one."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from pushpool.control_plane.api.offload import on_loop_unless_busy

    store = PostgresStore(postgres_url)
    try:
        async def route() -> threading.Thread:
            loop_thread = threading.current_thread()
            ran_on = await on_loop_unless_busy(SimpleNamespace(store=store), threading.current_thread)
            assert ran_on is not loop_thread
            return ran_on

        asyncio.run(route())
    finally:
        store.close()


def test_the_access_check_of_every_request_reads_off_the_event_loop(postgres_url, settings, monkeypatch):
    import threading

    from fastapi.testclient import TestClient

    from pushpool.control_plane.api import deps
    from pushpool.control_plane.app import build_context, create_app
    from pushpool.control_plane.bootstrap import bootstrap

    store = PostgresStore(postgres_url)
    try:
        ctx = build_context(settings, store)
        workspace, key = bootstrap(ctx)
        threads: list[str] = []
        real = deps.access_for
        monkeypatch.setattr(deps, "access_for", lambda *a: (threads.append(threading.current_thread().name),
                                                            real(*a))[1])
        with TestClient(create_app(settings, store, ctx=ctx)) as client:
            answer = client.get(f"/api/workspaces/{workspace}/work_pools", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and threads and all("AnyIO worker" in name or "ThreadPool" in name
                                                             for name in threads), threads
    finally:
        store.close()
