"""Schemathesis against the app's own OpenAPI document, in process, authenticated, every endpoint.

No input may produce a server error; every 4xx carries a JSON body with a ``detail``
naming the problem. The workspace path parameter is pinned to the caller's
workspace (which holds a pool, deployment, runs and a block) so requests get past
the tenant wall and reach the handlers. ``PUSHPOOL_FUZZ_EXAMPLES`` sets the number
of examples per operation (15 by default; ``make test-slow`` uses 200).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import schemathesis
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from pushpool.control_plane.app import create_app
from pushpool.control_plane.bootstrap import bootstrap
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.sqlite import SqliteStore

EXAMPLES = int(os.environ.get("PUSHPOOL_FUZZ_EXAMPLES", "15"))


def _build_target() -> tuple[object, str, str]:
    home = Path(tempfile.mkdtemp(prefix="pushpool-fuzz-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    store = SqliteStore(home / "fuzz.db")
    app = create_app(Settings(home=home, encryption_key=Fernet.generate_key().decode()), store)
    workspace, key = bootstrap(app.state.ctx)
    client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    base = f"/api/workspaces/{workspace}"
    assert client.post(f"{base}/work_pools", json={"name": "pool", "type": "local:push"}).status_code == 201
    dep = client.post(f"{base}/deployments", json={"flow_name": "f", "name": "d", "entrypoint": "f.py:f",
                                                    "work_pool_name": "pool", "schedules": [{"interval": 600}]})
    assert dep.status_code == 201
    assert client.post(f"{base}/deployments/{dep.json()['id']}/runs", json={}).status_code == 201
    block = {"name": "b", "type": "secret", "data": {"value": "v"}}
    assert client.post(f"{base}/blocks", json=block).status_code == 201
    return app, workspace, key


APP, WORKSPACE, KEY = _build_target()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_server_errors_and_4xx_explain_themselves(case):
    if case.path_parameters and "workspace" in case.path_parameters:
        case.path_parameters["workspace"] = WORKSPACE
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    if 400 <= response.status_code < 500 and response.status_code != 405:
        assert response.json().get("detail"), f"{where}: 4xx without a detail: {response.text}"
