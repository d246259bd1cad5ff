"""The store contract against the SQLite backend, plus SQLite specifics."""

from __future__ import annotations

import pytest

from control_plane.storage.sqlite import SqliteStore
from tests.control_plane.storage.contract import StoreContract


class TestSqliteStore(StoreContract):
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
