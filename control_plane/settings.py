"""Control-plane settings, read from ``PUSHPOOL_*`` environment variables.

A plain pydantic model that reads its variables itself (:func:`environment_values`), not a pydantic-settings
``BaseSettings``: importing pydantic-settings also imports asyncio, argparse and its dotenv and cloud-secret
sources, and every Lambda cold start paid for that. Every setting is a scalar or a comma-separated list, so
nothing is lost: a variable is matched case-insensitively, keyword arguments win over the environment, unknown
``PUSHPOOL_*`` variables are ignored (the CLI's own settings share the prefix), and a value that does not hold is
a ``ValidationError`` naming the setting (the CLI prints it as the variable).

The local config dir (``PUSHPOOL_HOME``, default ``~/.pushpool``) holds the SQLite
database, the block encryption key, the local pusher's run files and the CLI
profiles, so two servers with two homes never share state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ENV_PREFIX = "PUSHPOOL_"


def default_home() -> Path:
    return Path("~/.pushpool").expanduser()


#: Request headers a webhook never passes to its template or stores in an event (credentials).
DROPPED_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
                   "x-auth-token", "x-amz-security-token", "x-goog-iam-authorization-token")


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine only (a container in a cloud cannot call it back)."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "0.0.0.0", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: What to tell someone whose cloud runs would be given a loopback URL to report to.
LOOPBACK_HINT = ("runs on cloud pools report back to {url}, which a container in a cloud cannot reach: set "
                 "PUSHPOOL_PUBLIC_API_URL to an address they can (a public host, or a tunnel to this server; "
                 "see docs/self-hosting.md#expose-the-embedded-server)")


def environment_values(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The value of each setting in ``names`` its ``PUSHPOOL_<NAME>`` variable gives (any case), as text."""
    wanted = {f"{ENV_PREFIX}{name}".lower(): name for name in names}
    environ = os.environ if environ is None else environ
    return {wanted[key.lower()]: value for key, value in environ.items() if key.lower() in wanted}


class Settings(BaseModel):
    """The control plane's settings: ``Settings()`` reads the environment; ``Settings(port=1)`` overrides it."""

    model_config = ConfigDict(extra="ignore")

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**environment_values(type(self).model_fields), **values})

    home: Path = Field(default_factory=default_home, description="Local config dir.")
    host: str = "127.0.0.1"
    port: int = 4200
    #: The URL containers use to reach this control plane (defaults to http://host:port).
    public_api_url: str | None = None
    #: ``sqlite`` (embedded, one machine), ``postgresql`` (any number of replicas sharing one database) or
    #: ``dynamodb`` (the serverless stack).
    store: Literal["sqlite", "postgresql", "dynamodb"] = "sqlite"
    database_path: Path | None = None
    #: With ``store=postgresql``: ``postgresql://user:password@host:5432/dbname`` (libpq's URL or key=value form).
    database_url: str | None = None
    #: With ``store=postgresql``: the most connections one replica opens.
    database_pool_size: int = Field(default=10, ge=2, le=200)
    dynamodb_table: str | None = None
    #: Encrypt blocks with this KMS key (envelope encryption) instead of a Fernet key.
    kms_key_id: str | None = None
    #: On Lambda: the tick function the API invokes asynchronously when a run is due now.
    tick_function_name: str | None = None
    #: Create the first workspace and an owner key on start when the store has none. The control-plane image
    #: turns it off (a container's profile dies with it): ``pushpool server bootstrap`` makes and prints the key.
    bootstrap: bool = True
    #: A shared secret that lets a cron service (Cloud Scheduler, a Kubernetes CronJob) run a tick with
    #: ``POST /api/tick`` and ``Authorization: Bearer <it>``: replicas that scale to zero still schedule and
    #: dispatch. Unset (the default), the route does not exist. At least 32 characters.
    tick_token: SecretStr | None = None
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

    # ------------------------------------------------------------------ the trust model (docs/security.md)
    #: Who may make the control plane start processes on its own machine (``local:push``): ``off``,
    #: ``admins`` (instance administrators only: the single-user default) or ``members`` (anyone who
    #: may write deployments: a one-team server). Always ``off`` on Lambda.
    host_processes: Literal["off", "admins", "members"] = "admins"
    #: How host runs are walled off from the server: ``auto`` (Linux user, mount and pid namespaces
    #: when the kernel allows them, else only a minimal environment), ``required`` (refuse to start a
    #: run without them) or ``none``.
    host_isolation: Literal["auto", "required", "none"] = "auto"
    #: Extra paths a host run must not see (comma-separated), on top of the server's home, database
    #: and key files and the CLI's profiles.
    host_hidden_paths: list[Path] = Field(default_factory=list)
    #: Environment variables of the server passed on to host runs (comma-separated names); by default
    #: only PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ and TMPDIR are.
    host_env_passthrough: list[str] = Field(default_factory=list)
    #: Largest request body the API reads (bytes), and the largest for ``/hooks/<slug>``.
    max_body_bytes: int = 1_048_576
    max_webhook_body_bytes: int = 524_288
    #: Task-run reports one flow run may send (every version of every task run counts); past it, 413.
    max_task_run_reports_per_flow_run: int = Field(default=200_000, ge=1)
    #: Log bytes one flow run may send to the control plane; past it, one "truncated" line and no more.
    max_log_bytes_per_flow_run: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: Child runs (``run_deployment`` inside a flow) one run may start, and how deep runs may nest.
    max_child_runs_per_flow_run: int = Field(default=1000, ge=1)
    max_flow_run_depth: int = Field(default=10, ge=1)
    #: Tag concurrency limits one workspace may have.
    max_concurrency_limits_per_workspace: int = Field(default=1000, ge=1)
    #: Variables one workspace may have.
    max_variables_per_workspace: int = Field(default=1000, ge=1)
    #: Run logs are deleted this long after they arrive (by the tick; on DynamoDB by its TTL).
    log_retention_days: float = Field(default=30.0, gt=0)
    #: Outbound calls (notifications) may go to these addresses although they are loopback, private or
    #: link-local (comma-separated CIDRs or host names): for a webhook receiver inside your own network.
    outbound_allow: list[str] = Field(default_factory=list)
    #: Seconds one notification may take in all (connect, send, answer).
    outbound_timeout_seconds: float = 5.0
    #: Header names dropped from webhook requests before their template or event sees them.
    webhook_dropped_headers: list[str] = Field(default_factory=lambda: list(DROPPED_HEADERS))
    #: Failed authentications or unknown webhook slugs a source may cause per minute before it gets 429.
    failed_requests_per_minute: int = 30
    #: Time one schedule's occurrences may take to compute, in a request and in a scheduler pass.
    schedule_budget_seconds: float = 0.5
    #: Time one scheduler pass may take; the rest waits for the next pass.
    scheduler_pass_budget_seconds: float = 10.0

    # ------------------------------------------------------------------ observability (docs/observability.md)
    #: ``auto`` (Prometheus at /metrics on the embedded server, CloudWatch EMF on Lambda), ``prometheus``,
    #: ``emf`` or ``off``.
    metrics: Literal["auto", "prometheus", "emf", "off"] = "auto"
    #: A bearer token that lets a scraper on another host read /metrics (loopback callers need none).
    metrics_token: str | None = None
    #: The server's own log lines as ``text`` or as ``json`` (one object a line, with the ids it concerns).
    log_format: Literal["text", "json"] = "text"

    @field_validator("host_hidden_paths", "host_env_passthrough", "outbound_allow", "webhook_dropped_headers",
                     mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("tick_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("needs at least 32 characters (for instance `openssl rand -hex 32`)")
        return value

    @property
    def api_url(self) -> str:
        return (self.public_api_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def sqlite_path(self) -> Path:
        return self.database_path or self.home / "pushpool.db"
