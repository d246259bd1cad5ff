"""Tenant walls and tokens for every endpoint, enumerated from the app's routes.

For each route: a key of another workspace gets 404 and changes nothing; a viewer
cannot write (403); revoked and expired keys get 401; a run token can read and
report only its own run. A new route without an entry in ``WRITE_BODIES`` fails
the suite, so no endpoint escapes these checks.
"""

from __future__ import annotations

import json

import pytest

from pushpool.control_plane.services.dispatcher import Dispatcher

WS_PREFIX = "/api/workspaces/{workspace}"
#: Routes that take no API key: the health check, and a cron service's tick (the operator's PUSHPOOL_TICK_TOKEN,
#: never a key: tests/control_plane/api/test_tick.py; without the setting, as here, it answers 404 to everyone).
PUBLIC = {("GET", "/api/health"), ("POST", "/api/tick")}

#: A valid body for every write route, so a refusal is about access, not input.
WRITE_BODIES: dict[tuple[str, str], dict] = {
    ("POST", "/api/workspaces"): {"name": "w2"},
    ("POST", "/api/tick"): {},
    ("POST", "/api/users"): {"name": "u2"},
    ("POST", "/api/api_keys"): {"name": "k"},
    ("DELETE", "/api/api_keys/{key_id}"): {},
    ("PUT", WS_PREFIX + "/members/{actor_id}"): {"role": "owner"},
    ("POST", WS_PREFIX + "/members"): {"user": "viewer", "role": "owner"},
    ("DELETE", WS_PREFIX + "/members/{actor_id}"): {},
    ("POST", WS_PREFIX + "/service_accounts"): {"name": "sa2"},
    ("POST", WS_PREFIX + "/service_accounts/{account_id}/rotate"): {},
    ("DELETE", WS_PREFIX + "/service_accounts/{account_id}"): {},
    ("POST", WS_PREFIX + "/work_pools"): {"name": "p2", "type": "local:push"},
    ("PATCH", WS_PREFIX + "/work_pools/{name}"): {"paused": True},
    ("DELETE", WS_PREFIX + "/work_pools/{name}"): {},
    ("POST", WS_PREFIX + "/work_pools/{pool_name}/queues"): {"name": "q2"},
    ("PATCH", WS_PREFIX + "/work_pools/{pool_name}/queues/{name}"): {"paused": True},
    ("DELETE", WS_PREFIX + "/work_pools/{pool_name}/queues/{name}"): {},
    ("POST", WS_PREFIX + "/blocks"): {"name": "b2", "type": "secret", "data": {"value": "x"}},
    ("PUT", WS_PREFIX + "/blocks/{name}"): {"data": {"value": "changed"}},
    ("DELETE", WS_PREFIX + "/blocks/{name}"): {},
    ("POST", WS_PREFIX + "/deployments"): {"flow_name": "flow", "name": "d2", "entrypoint": "f.py:f",
                                           "work_pool_name": "pool"},
    ("PATCH", WS_PREFIX + "/deployments/{deployment_id}"): {"paused": True},
    ("DELETE", WS_PREFIX + "/deployments/{deployment_id}"): {},
    ("POST", WS_PREFIX + "/deployments/{deployment_id}/runs"): {},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/set_state"): {"type": "PENDING"},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/cancel"): {},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/retry"): {},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/children"): {"deployment": "flow/dep"},
    ("DELETE", WS_PREFIX + "/flow_runs/{run_id}"): {},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/task_runs"): {"task_runs": [
        {"id": "t1", "name": "t-0", "task_key": "m.t", "state_type": "RUNNING", "state_name": "Running"}]},
    ("PUT", WS_PREFIX + "/variables/{name}"): {"value": {"changed": True}},
    ("PUT", WS_PREFIX + "/concurrency_limits/{tag}"): {"limit": 5},
    ("DELETE", WS_PREFIX + "/concurrency_limits/{tag}"): {},
    ("POST", WS_PREFIX + "/concurrency_limits/acquire"): {"holder": "t1", "tags": ["db"]},
    ("POST", WS_PREFIX + "/concurrency_limits/release"): {"holder": "t1", "tags": ["db"]},
    ("POST", WS_PREFIX + "/events"): {"event": "etl.done", "resource": {"pushpool.resource.id": "etl.table.x"}},
    ("DELETE", WS_PREFIX + "/variables/{name}"): {},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/logs"): {"seq": 0, "lines": [
        {"timestamp": "2026-06-01T12:00:00+00:00", "message": "hello"}]},
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/logs/text"): {"text sent": "as the body"},
    ("PATCH", WS_PREFIX): {"require_webhook_service_account": True},
    ("POST", WS_PREFIX + "/webhooks"): {"name": "hook2", "template": "{{ body|tojson }}"},
    ("PATCH", WS_PREFIX + "/webhooks/{name}"): {"enabled": False},
    ("POST", WS_PREFIX + "/webhooks/{name}/rotate"): {},
    ("DELETE", WS_PREFIX + "/webhooks/{name}"): {},
    ("POST", WS_PREFIX + "/automations"): {"name": "auto2", "trigger": {}, "actions": [{"type": "pause-work-pool"}]},
    ("PUT", WS_PREFIX + "/automations/{reference}"): {"name": "auto", "trigger": {},
                                                      "actions": [{"type": "pause-work-pool"}]},
    ("PATCH", WS_PREFIX + "/automations/{reference}"): {"enabled": False},
    ("DELETE", WS_PREFIX + "/automations/{reference}"): {},
    ("PUT", WS_PREFIX + "/deployments/{deployment_id}/triggers"): [],
    ("POST", WS_PREFIX + "/deployments/{deployment_id}/backfills"): {"start": "2026-05-20T00:00:00+00:00",
                                                                     "end": "2026-05-25T00:00:00+00:00"},
    ("POST", WS_PREFIX + "/backfills/{backfill_id}/pause"): {},
    ("POST", WS_PREFIX + "/backfills/{backfill_id}/resume"): {},
    ("POST", WS_PREFIX + "/backfills/{backfill_id}/cancel"): {},
}

#: What a run token may call, for its own run only.
RUN_TOKEN_ALLOWED = {
    ("GET", "/api/me"),
    ("GET", WS_PREFIX + "/flow_runs/{run_id}"),
    ("GET", WS_PREFIX + "/flow_runs/{run_id}/states"),
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/set_state"),
    ("GET", WS_PREFIX + "/deployments/{deployment_id}"),
    ("GET", WS_PREFIX + "/flow_runs/{run_id}/task_runs"),
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/task_runs"),
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/logs"),
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/logs/text"),
    ("GET", WS_PREFIX + "/variables/{name}"),
    ("PUT", WS_PREFIX + "/variables/{name}"),
    ("POST", WS_PREFIX + "/events"),
    ("POST", WS_PREFIX + "/flow_runs/{run_id}/children"),
    ("GET", WS_PREFIX + "/flow_runs/{run_id}/children"),
    ("POST", WS_PREFIX + "/concurrency_limits/acquire"),
    ("POST", WS_PREFIX + "/concurrency_limits/release"),
}
#: What a run token may write, for its own run only (it reports its own progress, nothing else).
RUN_TOKEN_REPORTS = {("POST", WS_PREFIX + "/flow_runs/{run_id}/task_runs"),
                     ("POST", WS_PREFIX + "/flow_runs/{run_id}/logs"), ("PUT", WS_PREFIX + "/variables/{name}"),
                     ("POST", WS_PREFIX + "/flow_runs/{run_id}/logs/text"),
                     ("POST", WS_PREFIX + "/events"), ("POST", WS_PREFIX + "/flow_runs/{run_id}/children"),
                     ("POST", WS_PREFIX + "/concurrency_limits/acquire"),
                     ("POST", WS_PREFIX + "/concurrency_limits/release")}


def all_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) of the API, from its OpenAPI document."""
    out = [(method.upper(), path) for path, item in app.openapi()["paths"].items() if path.startswith("/api")
           for method in item]
    assert len(out) > 30, "route enumeration found too little; the checks below would be vacuous"
    return sorted(out)


@pytest.fixture
def world(api, ctx, fake_pusher):
    """Workspace 'default' with one of everything, a second workspace, and keys of every kind."""
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"])
    other_run = api.run(dep["id"])
    api.ok("POST", api.ws("/blocks"), json={"name": "b", "type": "secret", "data": {"value": "secret-value"}})
    api.ok("POST", api.ws("/webhooks"), json={"name": "hook", "template": "{{ body|tojson }}"})
    api.ok("PUT", api.ws("/variables/v"), json={"value": {"region": "eu"}})
    api.ok("POST", api.ws("/automations"), json={"name": "auto", "trigger": {"expect": ["x"]},
                                                 "actions": [{"type": "pause-work-pool", "work_pool": "pool"}]})
    sa = api.ok("POST", api.ws("/service_accounts"), json={"name": "bot"})
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    outsider = api.user("outsider", role="owner", workspace="other")
    viewer = api.user("viewer", role="viewer")
    d = Dispatcher(ctx)
    d.run_once()
    d.close()
    token = next(j for j in fake_pusher.jobs if j.flow_run_id == run["id"]).env["PUSHPOOL_RUN_TOKEN"]
    api.as_key(token).ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "RUNNING"})
    key_id = api.ok("GET", "/api/me")["api_key"]["id"]
    api.ok("PUT", api.ws("/concurrency_limits/db"), json={"limit": 3})
    daily = api.deployment("daily", schedules=[{"cron": "0 6 * * *"}])
    backfill = api.ok("POST", api.ws(f"/deployments/{daily['id']}/backfills"), json={
        "start": "2026-05-20T00:00:00+00:00", "end": "2026-05-25T00:00:00+00:00", "max_active": 1})
    params = {"backfill_id": backfill["id"],
              "workspace": "default", "deployment_id": dep["id"], "run_id": run["id"], "tag": "db", "account_id":
              sa["account"]["id"], "actor_id": sa["account"]["id"], "key_id": key_id, "flow_name": "flow",
              "pool_name": "pool", "pool_type": "local:push", "reference": "auto"}
    return {"api": api, "params": params, "outsider": outsider, "viewer": viewer, "token": token,
            "other_run": other_run}


#: The query a route needs besides its path (a text log report says its batch number, stream and time there).
QUERIES = {WS_PREFIX + "/flow_runs/{run_id}/logs/text": "?seq=0&stream=stdout&timestamp=1780000000.5"}


def fill(path: str, params: dict, **override: str) -> str:
    values = {**params, **override}
    if "/queues/{name}" in path:
        values["name"] = "default"
    elif "/blocks/{name}" in path:
        values["name"] = "b"
    elif "/deployments/name/" in path:
        values["name"] = "dep"
    elif "/webhooks/{name}" in path:
        values["name"] = "hook"
    elif "/variables/{name}" in path:
        values["name"] = "v"
    else:
        values["name"] = "pool"
    return path.format(**values) + QUERIES.get(path, "")


def snapshot(api, skip: tuple[str, ...] = ()) -> str:
    """Everything the owner can read, to prove a refused call changed nothing."""
    paths = ("/work_pools", "/blocks", "/deployments", "/flow_runs", "/service_accounts", "/work_pools/pool/queues",
             "/webhooks", "/automations", "/variables", "/members", "/concurrency_limits", "/backfills")
    parts = [api.get(api.ws(p)).text for p in paths if p not in skip]
    if "/events" not in skip:
        parts.append(api.get(f"/api/workspaces/{api.workspace}/events").text)
    parts.append(api.get("/api/me").text)
    return json.dumps(parts)


def call(api, key: str, method: str, path: str):
    return api.as_key(key).request(method, path, json=WRITE_BODIES.get((method, path.split("?")[0]), {}))


def test_every_write_route_has_a_sample_body(app):
    writes = {(m, p) for m, p in all_routes(app) if m != "GET"}
    assert writes == set(WRITE_BODIES), "add the new route to WRITE_BODIES (and think about who may call it)"


def test_another_workspace_gets_404_everywhere_and_changes_nothing(app, world):
    api = world["api"]
    before = snapshot(api)
    for method, path in all_routes(app):
        if not path.startswith(WS_PREFIX):
            continue
        response = api.as_key(world["outsider"]).request(method, fill(path, world["params"]),
                                                         json=WRITE_BODIES.get((method, path), {}))
        assert response.status_code == 404, (method, path, response.status_code, response.text)
    assert snapshot(api) == before


def test_a_viewer_cannot_write_anything(app, world):
    api = world["api"]
    before = snapshot(api)
    for method, path in all_routes(app):
        if method == "GET" or (method, path) in {("POST", "/api/api_keys"), ("DELETE", "/api/api_keys/{key_id}")}:
            continue  # own keys are every user's business; covered below
        response = api.as_key(world["viewer"]).request(method, fill(path, world["params"]),
                                                       json=WRITE_BODIES[(method, path)])
        assert response.status_code in (403, 404), (method, path, response.status_code, response.text)
    assert snapshot(api) == before
    # Another user's key cannot be revoked by the viewer.
    assert api.as_key(world["viewer"]).request(
        "DELETE", f"/api/api_keys/{world['params']['key_id']}").status_code == 404


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_revoked_and_expired_keys_get_401_everywhere(app, world, clock, how):
    api = world["api"]
    issued = api.ok("POST", "/api/api_keys", json={"name": "short", "expires_in_seconds": 60})
    if how == "revoked":
        api.ok("DELETE", f"/api/api_keys/{issued['api_key']['id']}")
    else:
        clock.advance(61)
    for method, path in all_routes(app):
        if (method, path) in PUBLIC:
            continue
        response = call(api, issued["key"], method, fill(path, world["params"]))
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["reason"] == how


def test_run_token_reaches_only_its_own_run(app, world):
    api = world["api"]
    # A run may set a variable, emit an event, take a slot of a limit.
    before = snapshot(api, skip=("/variables", "/events", "/concurrency_limits"))
    for method, path in all_routes(app):
        if (method, path) in PUBLIC:
            continue
        url = fill(path, world["params"])
        response = api.as_key(world["token"]).request(method, url, json=WRITE_BODIES.get((method, path), {}))
        if (method, path) in RUN_TOKEN_ALLOWED:
            if (method, path) in RUN_TOKEN_REPORTS:
                assert response.status_code in (200, 201, 202), (method, path, response.text)
            elif method == "POST":  # a run token may only report its own progress
                assert response.status_code == 403, (method, path, response.text)
            else:
                assert response.status_code == 200, (method, path, response.text)
            if "{run_id}" in path:  # never another run
                other = fill(path, world["params"], run_id=world["other_run"]["id"])
                body = WRITE_BODIES.get((method, path), {})
                assert api.as_key(world["token"]).request(method, other, json=body).status_code == 404
        else:
            assert response.status_code in (403, 404), (method, path, response.status_code, response.text)
    for child in api.ok("GET", api.ws(f"/flow_runs/{world['params']['run_id']}/children")):  # it started one
        api.ok("DELETE", api.ws(f"/flow_runs/{child['id']}"))
    assert snapshot(api, skip=("/variables", "/events", "/concurrency_limits")) == before
    assert [v["name"] for v in api.ok("GET", api.ws("/variables"))] == ["v"]  # set by the run, never deleted
