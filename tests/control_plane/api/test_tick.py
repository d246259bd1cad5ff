"""POST /api/tick: a cron service's pass of the tick with the operator's PUSHPOOL_TICK_TOKEN, never a tenant's key;
without the setting the route does not exist."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from pushpool.control_plane.app import build_context, create_app
from pushpool.control_plane.bootstrap import bootstrap
from pushpool.control_plane.services.ticker import Ticker
from pushpool.control_plane.settings import Settings
from pushpool.pushers.base import PusherContext, PusherRegistry
from tests.conftest import FAKE_POOL_TYPE, Api

TOKEN = "0123456789abcdef" * 3


@pytest.fixture
def ticking(settings, store, clock, fake_pusher):
    """(api, ticker) of an app with PUSHPOOL_TICK_TOKEN set and a ticker attached, as `server start` makes it."""
    changed = settings.model_copy(update={"tick_token": SecretStr(TOKEN)})
    registry = PusherRegistry(PusherContext(state_dir=changed.home, api_url=changed.api_url),
                              overrides={FAKE_POOL_TYPE: fake_pusher})
    context = build_context(changed, store, clock, registry)
    app = create_app(changed, store, ctx=context)
    ticker = Ticker(context)
    app.state.ticker = ticker
    workspace, key = bootstrap(context)
    yield Api(TestClient(app), key, workspace), ticker
    ticker.stop()


def _due_run(api: Api) -> dict:
    api.pool()
    return api.run(api.deployment()["id"])


def test_a_call_with_the_token_runs_a_pass_that_dispatches_the_due_run(ticking, fake_pusher):
    api, _ = ticking
    run = _due_run(api)
    answer = api.client.post("/api/tick", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["skipped"] is False and body["dispatched"] == 1 and body["errors"] == 0
    assert [job.flow_run_id for job in fake_pusher.jobs] == [run["id"]]
    assert api.get(api.ws(f"/flow_runs/{run['id']}")).json()["state"]["type"] == "PENDING"


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-the-same-size-0123456789abcdef012",
                                           f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "])
def test_anything_but_the_token_is_refused_and_nothing_runs(ticking, fake_pusher, authorization):
    api, _ = ticking
    _due_run(api)
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = api.client.post("/api/tick", headers=headers)
    assert answer.status_code == 401 and TOKEN not in answer.text
    assert fake_pusher.jobs == []


def test_a_tenants_own_api_key_cannot_tick(ticking, fake_pusher):
    """A hostile tenant (an owner of its workspace) cannot make the control plane work for it out of turn."""
    api, _ = ticking
    _due_run(api)
    tenant = api.user("mallory", role="owner")
    for headers in ({"Authorization": f"Bearer {tenant}"}, {"X-API-Key": tenant},
                    {"Authorization": f"Bearer {api.key}"}):
        assert api.client.post("/api/tick", headers=headers).status_code == 401
    assert api.client.post(f"/api/tick?token={TOKEN}").status_code == 401  # only the header counts
    assert fake_pusher.jobs == []


def test_without_the_setting_the_route_does_not_exist(api):
    answer = api.client.post("/api/tick", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404 and "PUSHPOOL_TICK_TOKEN" in answer.json()["detail"]


def test_a_pass_already_running_here_is_not_doubled(ticking):
    api, ticker = ticking
    with ticker._outside_tick:  # another cron call's pass is running
        answer = api.client.post("/api/tick", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json() == {"skipped": True}


def test_where_no_tick_loop_runs_the_call_says_so(settings, store, clock):
    changed = settings.model_copy(update={"tick_token": SecretStr(TOKEN)})
    app = create_app(changed, store, ctx=build_context(changed, store, clock))
    answer = TestClient(app).post("/api/tick", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 409 and "EventBridge" in answer.json()["detail"]


def test_a_short_token_is_refused_naming_the_setting(isolated_home, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_TICK_TOKEN", "too-short")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings()
