"""The store contract against a real PostgreSQL (tests/postgres_fixtures.py), plus PostgreSQL specifics."""

from __future__ import annotations

import pytest

from tests.control_plane.storage.contract import StoreContract
from tests.control_plane.storage.contract_backfills import BackfillsContract
from tests.control_plane.storage.contract_events import EventsContract
from tests.control_plane.storage.contract_reports import ReportsContract

pytest.importorskip("psycopg")
from pushpool.control_plane.storage.postgres import PostgresStore, to_postgres  # noqa: E402


class TestPostgresStore(StoreContract, ReportsContract, EventsContract, BackfillsContract):
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
