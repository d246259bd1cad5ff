"""Storage backends behind one :class:`~control_plane.storage.base.Store` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushpool.control_plane.errors import ConfigurationError
from pushpool.control_plane.home import prepare_home
from pushpool.control_plane.storage.base import ClaimResult, Store

if TYPE_CHECKING:
    from pushpool.control_plane.settings import Settings

__all__ = ["ClaimResult", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The backend the settings name (each imported only when chosen)."""
    if settings.store == "dynamodb":
        if not settings.dynamodb_table:
            raise ConfigurationError("PUSHPOOL_STORE=dynamodb needs PUSHPOOL_DYNAMODB_TABLE (the table name)")
        from pushpool.control_plane.storage.dynamodb import DynamoDbStore

        return DynamoDbStore(settings.dynamodb_table)
    if settings.store == "postgresql":
        if not settings.database_url:
            raise ConfigurationError("PUSHPOOL_STORE=postgresql needs PUSHPOOL_DATABASE_URL "
                                     "(postgresql://user:password@host:5432/dbname)")
        from pushpool.control_plane.storage.postgres import PostgresStore

        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size)
    from pushpool.control_plane.storage.sqlite import SqliteStore

    prepare_home(settings.home)
    return SqliteStore(settings.sqlite_path)
