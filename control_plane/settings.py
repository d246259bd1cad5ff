"""Control-plane settings, read from ``PUSHPOOL_*`` environment variables.

The local config dir (``PUSHPOOL_HOME``, default ``~/.pushpool``) holds the SQLite
database, the block encryption key, the local pusher's run files and the CLI
profiles, so two servers with two homes never share state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path("~/.pushpool").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUSHPOOL_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Local config dir.")
    host: str = "127.0.0.1"
    port: int = 4200
    #: The URL containers use to reach this control plane (defaults to http://host:port).
    public_api_url: str | None = None
    #: ``sqlite`` (embedded, one machine) or ``dynamodb`` (the serverless stack).
    store: Literal["sqlite", "dynamodb"] = "sqlite"
    database_path: Path | None = None
    dynamodb_table: str | None = None
    #: Encrypt blocks with this KMS key (envelope encryption) instead of a Fernet key.
    kms_key_id: str | None = None
    #: On Lambda: the tick function the API invokes asynchronously when a run is due now.
    tick_function_name: str | None = None
    #: Fernet key (urlsafe base64). When unset it is generated into ``home/encryption.key``.
    encryption_key: str | None = None

    tick_interval_seconds: float = 1.0
    #: Events older than this are deleted by the tick (and by DynamoDB's TTL after at most 400 days).
    events_retention_days: float = 7.0
    scheduler_interval_seconds: float = 10.0
    #: Runs are materialised this far ahead ...
    scheduler_horizon_seconds: int = 3600
    #: ... with at least this many and at most that many future runs per deployment.
    scheduler_min_runs: int = 3
    scheduler_max_runs: int = 100
    #: A SCHEDULED run this many seconds past its time is marked Late.
    late_after_seconds: int = 15
    #: A claimed run not submitted within this window may be taken over by another dispatcher.
    submission_lease_seconds: int = 120
    submission_max_attempts: int = 6
    submission_backoff_seconds: float = 2.0
    submission_backoff_max_seconds: float = 120.0
    default_max_runtime_seconds: int = 24 * 3600
    #: Run tokens stay valid this long past the run's runtime deadline.
    run_token_grace_seconds: int = 600
    dispatch_batch_size: int = 100
    pusher_threads: int = 8

    @property
    def api_url(self) -> str:
        return (self.public_api_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def sqlite_path(self) -> Path:
        return self.database_path or self.home / "pushpool.db"
