"""Events emitted by clients and flows: names, resources, who may, and what a run token's events say."""

from __future__ import annotations

from tests.control_plane.api.test_auth import run_token_for

TABLE = {"pushpool.resource.id": "warehouse.table.orders", "pushpool.resource.name": "orders"}


def stored(api, name: str) -> list[dict]:
    return [e for e in api.ok("GET", api.ws("/events"), params={"event": name})["events"]]


def test_a_developer_emits_an_event_about_a_resource(api, ctx):
    made = api.ok("POST", api.ws("/events"), status=201, json={"event": "etl.table.refreshed", "resource": TABLE,
                                                               "payload": {"rows": 10}})
    assert made["resource"] == TABLE and made["payload"] == {"rows": 10}
    ctx.events.flush()
    [event] = stored(api, "etl.table.refreshed")
    assert event["id"] == made["id"]
    missing = api.post(api.ws("/events"), json={"event": "etl.x"})
    assert missing.status_code == 422 and "resource" in missing.json()["detail"]


def test_system_names_times_and_roles_are_refused(api, ctx):
    for body in ({"event": "pushpool.flow-run.Completed", "resource": TABLE},
                 {"event": "x", "resource": {"name": "no id"}},
                 {"event": "x", "resource": TABLE, "occurred": "2020-01-01T00:00:00+00:00"}):
        response = api.post(api.ws("/events"), json=body)
        assert response.status_code == 422, (body, response.text)
    viewer = api.as_key(api.user("vera", role="viewer"))
    assert viewer.post(viewer.ws("/events"), json={"event": "x", "resource": TABLE}).status_code == 403
    ctx.events.flush()
    assert stored(api, "x") == [] and stored(api, "pushpool.flow-run.Completed") == []


def test_a_runs_events_are_about_the_run_or_name_it(api, ctx, fake_pusher):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    own = token.ok("POST", token.ws("/events"), json={"event": "etl.started"})
    assert own["resource"]["pushpool.resource.id"] == f"pushpool.flow-run.{run['id']}"
    about = token.ok("POST", token.ws("/events"), json={"event": "etl.table.refreshed", "resource": TABLE,
                                                        "related": [{"pushpool.resource.id": "x.y"}]})
    ids = {r["pushpool.resource.id"] for r in about["related"]}
    assert f"pushpool.flow-run.{run['id']}" in ids and "x.y" in ids
    assert any(r["pushpool.resource.id"].startswith("pushpool.deployment.") for r in about["related"])
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    assert token.post("/api/workspaces/other/events", json={"event": "x"}).status_code == 404
