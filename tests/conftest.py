"""Shared fixtures: a store, a fake clock, a service context, and an authenticated API client."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from pushpool.control_plane.app import build_context, create_app
from pushpool.control_plane.bootstrap import bootstrap
from pushpool.control_plane.clock import FakeClock
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.scheduler import run_scheduler
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.sqlite import SqliteStore
from pushpool.pushers.base import PUSHER_TYPES, PusherContext, PusherRegistry
from tests.aws_fixtures import aws, moto_server  # noqa: F401 - fixtures
from tests.azure_fixtures import arm_api, azure_api  # noqa: F401 - fixtures
from tests.browser_fixtures import chromium  # noqa: F401 - fixture
from tests.coiled_fixtures import coiled_api  # noqa: F401 - fixture
from tests.docker_fixtures import debian_python_base, docker_engine, docker_host  # noqa: F401 - fixtures
from tests.fakes.pushers import RecordingPusher
from tests.gcp_fixtures import cloud_run_api, gcp_api  # noqa: F401 - fixtures
from tests.modal_fixtures import modal_api  # noqa: F401 - fixture
from tests.postgres_fixtures import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.registry_fixtures import oci_registries  # noqa: F401 - fixture

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# CI explores the same examples every time (a red CI must be reproducible); developers explore new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


#: A pool type for tests of the control plane itself: a cloud-like target (no host processes) served
#: by the RecordingPusher that the ``ctx`` fixture registers.
FAKE_POOL_TYPE = "fake:push"


@pytest.fixture(autouse=True)
def fake_pool_type(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(PUSHER_TYPES, FAKE_POOL_TYPE, "tests.fakes.pushers:RecordingPusher")
    return FAKE_POOL_TYPE


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the developer's ~/.pushpool or their PUSHPOOL_* settings."""
    for name in [n for n in os.environ if n.startswith("PUSHPOOL_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("PUSHPOOL_HOME", str(home))
    return home


@pytest.fixture
def settings(isolated_home: Path) -> Settings:
    # The brake on failing callers is tested on its own (tests/security/test_hostile_tenant.py); suites
    # that try every route with a bad key would trip it.
    return Settings(home=isolated_home, encryption_key=Fernet.generate_key().decode(),
                    submission_backoff_seconds=1.0, scheduler_interval_seconds=0, failed_requests_per_minute=10_000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "pushpool.db")
    yield s
    s.close()


@pytest.fixture
def fake_pusher() -> RecordingPusher:
    return RecordingPusher()


@pytest.fixture
def ctx(settings: Settings, store: SqliteStore, clock: FakeClock, fake_pusher: RecordingPusher) -> ServiceContext:
    registry = PusherRegistry(PusherContext(state_dir=settings.home, api_url=settings.api_url),
                              overrides={"local:push": fake_pusher, FAKE_POOL_TYPE: fake_pusher})
    context = build_context(settings, store, clock, registry)
    # As the embedded server's ticker does within a second: a schedule change gets a scheduler pass
    # (here at once, so tests see the whole horizon; tests of the split set their own).
    context.wake_scheduler = lambda: run_scheduler(context)
    return context


class Api:
    """A TestClient bound to one key and workspace, with shortcuts for common set-up."""

    def __init__(self, client: TestClient, key: str, workspace: str) -> None:
        self.client, self.key, self.workspace = client, key, workspace

    def as_key(self, key: str, workspace: str | None = None) -> Api:
        return Api(self.client, key, workspace or self.workspace)

    def ws(self, path: str) -> str:
        return f"/api/workspaces/{self.workspace}{path}"

    def request(self, method: str, path: str, **kwargs: Any):
        headers = kwargs.pop("headers", {})
        if self.key:
            headers.setdefault("Authorization", f"Bearer {self.key}")
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kw: Any):
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any):
        return self.request("POST", path, **kw)

    def ok(self, method: str, path: str, status: int | None = None, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        assert response.status_code < 300 if status is None else response.status_code == status, response.text
        return response.json() if response.content else None

    # -------------------------------------------------------------- set-up shortcuts
    def pool(self, name: str = "pool", type: str = FAKE_POOL_TYPE, **fields: Any) -> dict:
        return self.ok("POST", self.ws("/work_pools"), json={"name": name, "type": type, **fields})

    def deployment(self, name: str = "dep", flow_name: str = "flow", pool: str = "pool", **fields: Any) -> dict:
        body = {"flow_name": flow_name, "name": name, "entrypoint": "flows.py:main", "work_pool_name": pool, **fields}
        return self.ok("POST", self.ws("/deployments"), json=body)

    def run(self, deployment_id: str, **fields: Any) -> dict:
        return self.ok("POST", self.ws(f"/deployments/{deployment_id}/runs"), json=fields)

    def user(self, name: str, role: str = "developer", workspace: str | None = None, **fields: Any) -> str:
        body = {"name": name, "workspace": workspace or self.workspace, "role": role, **fields}
        return self.ok("POST", "/api/users", json=body)["key"]


@pytest.fixture
def live(isolated_home: Path):
    """A real embedded server on 127.0.0.1 (see tests/live_server.py)."""
    from tests.live_server import LiveServer

    server = LiveServer(isolated_home)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_with(isolated_home: Path):
    """``live_with(**settings)``: a real embedded server with some settings changed (stopped after the test)."""
    from tests.live_server import LiveServer

    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        server = LiveServer(isolated_home, **settings)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def app(settings: Settings, store: SqliteStore, ctx: ServiceContext):
    return create_app(settings, store, ctx=ctx)


@pytest.fixture
def api(app, ctx: ServiceContext) -> Api:
    workspace, key = bootstrap(ctx)
    return Api(TestClient(app), key, workspace)


@pytest.fixture
def api_with(settings: Settings, store: SqliteStore, clock: FakeClock):
    """``api_with(**settings)``: an authenticated client of an app whose settings differ from ``settings``
    (its own context, on the same store)."""
    def make(**changes: Any) -> Api:
        changed = settings.model_copy(update=changes)
        context = build_context(changed, store, clock)
        workspace, key = bootstrap(context)
        return Api(TestClient(create_app(changed, store, ctx=context)), key, workspace)

    return make
