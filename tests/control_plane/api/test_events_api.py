"""Events through the API: what the control plane emits, filters, pages, workspace isolation."""

from __future__ import annotations

from pushpool.control_plane.services.dispatcher import Dispatcher


def events(api, **params) -> list[dict]:
    return api.ok("GET", api.ws("/events"), params=params)["events"]


def test_state_changes_deployments_and_pools_are_events(api, ctx):
    api.pool()
    dep = api.deployment(tags=["etl"])
    run = api.run(dep["id"])
    Dispatcher(ctx).run_once()  # SCHEDULED → PENDING → submitted
    ctx.events.flush()  # the dispatcher's events (the tick does this)
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "RUNNING"})
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "FAILED", "message": "boom"})

    names = [e["event"] for e in events(api, order="asc")]
    assert names[:2] == ["pushpool.work-pool.created", "pushpool.deployment.created"]
    assert names[2:] == ["pushpool.flow-run.Scheduled", "pushpool.flow-run.Pending",
                         "pushpool.infrastructure.submitted", "pushpool.flow-run.Running", "pushpool.flow-run.Failed"]
    failed = events(api, event="pushpool.flow-run.Failed")[0]
    assert failed["resource"]["pushpool.resource.id"] == f"pushpool.flow-run.{run['id']}"
    assert failed["resource"]["pushpool.resource.name"] == run["name"]
    assert failed["payload"]["intended"] == {"from": "RUNNING", "to": "FAILED"}
    assert failed["payload"]["validated_state"]["message"] == "boom"
    roles = {r["pushpool.resource.role"]: r for r in failed["related"]}
    assert roles["deployment"]["pushpool.resource.id"] == f"pushpool.deployment.{dep['id']}"
    assert roles["deployment"]["pushpool.resource.name"] == "flow/dep"
    assert roles["work-pool"]["pushpool.resource.name"] == "pool"
    assert roles["tag"]["pushpool.resource.id"] == "pushpool.tag.etl"
    assert {"flow", "work-queue"} <= set(roles)


def test_filters_pages_and_isolation(api, ctx):
    api.pool()
    dep = api.deployment()
    for _ in range(5):
        api.run(dep["id"])
    by_resource = events(api, resource="pushpool.flow-run.*")
    assert len(by_resource) == 5 and all(e["event"] == "pushpool.flow-run.Scheduled" for e in by_resource)
    assert events(api, resource=f"pushpool.deployment.{dep['id']}")[0]["event"] == "pushpool.deployment.created"
    of_deployment = events(api, related=f"pushpool.deployment.{dep['id']}")
    assert len(of_deployment) == 5 and {e["event"] for e in of_deployment} == {"pushpool.flow-run.Scheduled"}

    seen, after = [], None
    while True:
        page = api.ok("GET", api.ws("/events"), params={"limit": 2, "order": "asc", **({"after": after} if after
                                                                                      else {})})
        seen += [e["id"] for e in page["events"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 7  # pool, deployment, five runs
    tail = api.ok("GET", api.ws("/events"), params={"order": "asc", "limit": 5})
    following = api.ok("GET", api.ws("/events"), params={"order": "asc", "after": tail["last"]})
    assert following["next"] is None and [e["id"] for e in following["events"]] == seen[5:]
    assert api.ok("GET", api.ws("/events"), params={"order": "asc", "after": following["last"]})["events"] == []

    assert api.request("GET", api.ws("/events"), params={"since": "2026-01-01T00:00:00"}).status_code == 422
    assert api.request("GET", api.ws("/events"), params={"after": "nonsense"}).status_code == 422

    api.ok("POST", "/api/workspaces", json={"name": "other"})
    other = api.as_key(api.key, "other")
    assert events(other) == []
    stranger = api.as_key(api.user("stranger", workspace="other"), workspace=api.workspace)
    assert stranger.request("GET", api.ws("/events")).status_code == 404
