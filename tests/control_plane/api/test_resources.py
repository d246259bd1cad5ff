"""Pools, queues, deployments and flow runs through the API, including every bad-input path."""

from __future__ import annotations

import pytest


def test_health_and_openapi_docs(api):
    assert api.client.get("/api/health").json()["status"] == "ok"
    assert api.client.get("/docs").status_code == 200
    assert "/api/workspaces/{workspace}/work_pools" in api.client.get("/openapi.json").json()["paths"]


def test_no_two_routes_answer_the_same_method_and_path(api):
    """The app lists its busiest routes first; that is safe only while no route shadows another."""
    import re

    from starlette.routing import compile_path

    routes = [(r.path, set(getattr(r, "methods", None) or ())) for r in api.client.app.router.routes]
    assert len(routes) > 30
    clashes = []
    for path, methods in routes:
        pattern = compile_path(path)[0]
        for other, other_methods in routes:
            sample = re.sub(r"\{[^}]+\}", "x-1", other)
            if other != path and methods & other_methods and pattern.match(sample):
                clashes.append((path, other))
    assert clashes == []


def test_pool_gets_the_pusher_default_template_and_a_default_queue(api):
    pool = api.pool(prefetch_seconds=10, concurrency_limit=3)
    assert "working_dir" in pool["base_job_template"]["variables"]["properties"]
    assert [q["name"] for q in api.ok("GET", api.ws("/work_pools/pool/queues"))] == ["default"]
    default = api.ok("GET", "/api/pool_types/local:push/base_job_template")
    assert default == pool["base_job_template"]
    updated = api.ok("PATCH", api.ws("/work_pools/pool"), json={"clear_concurrency_limit": True, "paused": True})
    assert updated["concurrency_limit"] is None and updated["paused"] is True


@pytest.mark.parametrize("body, status, fragment", [
    ({"name": "p", "type": "kubernetes:push"}, 422, "unknown work pool type 'kubernetes:push'"),
    ({"name": "p", "type": "local:push", "base_job_template": {"job_configuration": {"a": "{{ b }}"},
                                                               "variables": {"type": "object"}}},
     422, "placeholder {{ b }} does not name a variable"),
    ({"name": "bad name!", "type": "local:push"}, 422, "name"),
    ({"name": "p", "type": "local:push", "late_run_policy": {"mode": "sometimes"}}, 422, "late_run_policy"),
])
def test_bad_pools_are_rejected_and_nothing_is_written(api, body, status, fragment):
    response = api.post(api.ws("/work_pools"), json=body)
    assert response.status_code == status and fragment in response.text
    assert api.ok("GET", api.ws("/work_pools")) == []


def test_duplicate_pool_is_409(api):
    api.pool()
    response = api.post(api.ws("/work_pools"), json={"name": "pool", "type": "local:push"})
    assert response.status_code == 409 and "already exists" in response.json()["detail"]


def test_pool_in_use_cannot_be_deleted_and_default_queue_stays(api):
    api.pool()
    dep = api.deployment()
    assert api.request("DELETE", api.ws("/work_pools/pool")).status_code == 409
    assert api.request("DELETE", api.ws("/work_pools/pool/queues/default")).status_code == 422
    run = api.run(dep["id"])
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "PENDING"})
    api.ok("DELETE", api.ws(f"/deployments/{dep['id']}"))
    response = api.request("DELETE", api.ws("/work_pools/pool"))
    assert response.status_code == 409 and "still has running flow runs" in response.text
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/cancel"))
    api.ok("DELETE", api.ws("/work_pools/pool"))


def test_deploying_twice_updates_in_place(api, clock):
    api.pool()
    first = api.deployment(version="1", tags=["a"])
    second = api.request("POST", api.ws("/deployments"), json={
        "flow_name": "flow", "name": "dep", "entrypoint": "flows.py:main", "work_pool_name": "pool", "version": "2"})
    assert second.status_code == 200
    assert second.json()["id"] == first["id"] and second.json()["version"] == "2"
    assert len(api.ok("GET", api.ws("/deployments"))) == 1
    by_name = api.ok("GET", api.ws("/deployments/name/flow/dep"))
    assert by_name["id"] == first["id"]
    clock.advance(60)
    again = api.request("POST", api.ws("/deployments"), json={
        "flow_name": "flow", "name": "dep", "entrypoint": "flows.py:main", "work_pool_name": "pool", "version": "2"})
    assert again.json() == second.json()  # identical: not even its 'updated' time moves


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
          "required": ["name"]}


@pytest.mark.parametrize("fields, fragment", [
    ({"schedules": [{"cron": "every day"}]}, "schedules[0].cron: 'every day' is not a valid cron expression"),
    ({"schedules": [{"interval": 60, "timezone": "Nowhere/City"}]}, "unknown timezone 'Nowhere/City'"),
    ({"job_variables": {"cpu": 2}}, "job_variables.cpu: unknown job variable"),
    ({"job_variables": {"working_dir": 5}}, "job_variables.working_dir: 5 is not of type 'string'"),
    ({"work_pool_name": "missing"}, "work_pool_name: work pool 'missing' does not exist"),
    ({"work_queue_name": "nope"}, "work_queue_name: work pool 'pool' has no queue 'nope'"),
    ({"parameter_schema": SCHEMA, "parameters": {"name": 3}}, "parameters.name: 3 is not of type 'string'"),
    ({"parameter_schema": SCHEMA, "parameters": {"name": "x"},
      "schedules": [{"interval": 60, "parameters": {"count": "many"}}]}, "schedules[0].parameters.count"),
    ({"entrypoint": "no-function-here"}, "entrypoint"),
])
def test_bad_deployments_name_the_field_and_write_nothing(api, fields, fragment):
    api.pool()
    body = {"flow_name": "flow", "name": "dep", "entrypoint": "flows.py:main", "work_pool_name": "pool", **fields}
    response = api.post(api.ws("/deployments"), json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.text
    assert api.ok("GET", api.ws("/deployments")) == []
    assert api.ok("GET", api.ws("/flow_runs")) == []


def test_a_deployment_may_lack_required_parameters_that_each_run_then_supplies(api):
    """As in Prefect: a flow with a required parameter and no default deploys; an ad-hoc run must supply it,
    and a schedule whose parameters (the deployment's and its own) lack it is refused, naming it."""
    api.pool()
    dep = api.deployment(parameter_schema=SCHEMA)
    assert dep["parameters"] == {}
    missing = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={})
    assert missing.status_code == 422 and "'name' is a required property" in missing.json()["detail"]
    assert api.run(dep["id"], parameters={"name": "given"})["parameters"] == {"name": "given"}
    scheduled = api.post(api.ws("/deployments"), json={
        "flow_name": "flow", "name": "sched", "entrypoint": "flows.py:main", "work_pool_name": "pool",
        "parameter_schema": SCHEMA, "schedules": [{"interval": 60}]})
    assert scheduled.status_code == 422
    assert "schedules[0].parameters: 'name' is a required property" in scheduled.json()["detail"]
    with_it = api.deployment(name="sched", parameter_schema=SCHEMA,
                             schedules=[{"interval": 60, "parameters": {"name": "nightly"}}])
    assert with_it["schedules"][0]["parameters"] == {"name": "nightly"}


def test_flow_run_parameters_are_validated_against_the_schema(api):
    api.pool()
    dep = api.deployment(parameter_schema=SCHEMA, parameters={"name": "x"})
    bad = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={"parameters": {"count": "three"}})
    assert bad.status_code == 422 and "parameters.count: 'three' is not of type 'integer'" in bad.text
    bad_var = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={"job_variables": {"memory": 1}})
    assert bad_var.status_code == 422 and "job_variables.memory: unknown job variable" in bad_var.text
    run = api.run(dep["id"], parameters={"count": 3}, tags=["t"], name="custom")
    assert run["parameters"] == {"name": "x", "count": 3} and run["name"] == "custom" and run["tags"] == ["t"]
    assert len(api.ok("GET", api.ws("/flow_runs"))) == 1


def test_state_machine_rejects_illegal_transitions_with_409(api):
    api.pool()
    run = api.run(api.deployment()["id"])
    path = api.ws(f"/flow_runs/{run['id']}/set_state")
    response = api.post(path, json={"type": "COMPLETED"})
    assert response.status_code == 409 and "SCHEDULED to COMPLETED" in response.json()["detail"]
    for state in ("PENDING", "RUNNING", "COMPLETED"):
        api.ok("POST", path, json={"type": state})
    assert api.post(path, json={"type": "RUNNING"}).status_code == 409
    history = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/states"))
    assert [s["type"] for s in history] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    final = api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))
    assert final["start_time"] and final["end_time"]
    assert api.post(api.ws(f"/flow_runs/{run['id']}/cancel")).status_code == 409


def test_cancelling_a_scheduled_run_is_immediate(api):
    api.pool()
    run = api.run(api.deployment()["id"])
    assert api.ok("POST", api.ws(f"/flow_runs/{run['id']}/cancel"))["state"]["type"] == "CANCELLED"


def test_list_filters(api, clock):
    api.pool()
    a, b = api.deployment("a"), api.deployment("b", flow_name="other")
    ra = api.run(a["id"], tags=["eu", "nightly"])
    clock.advance(10)
    rb = api.run(b["id"], tags=["eu"])
    api.ok("POST", api.ws(f"/flow_runs/{rb['id']}/cancel"))
    assert [r["id"] for r in api.ok("GET", api.ws("/flow_runs"), params={"deployment_id": a["id"]})] == [ra["id"]]
    assert [r["id"] for r in api.ok("GET", api.ws("/flow_runs"), params={"state": "CANCELLED"})] == [rb["id"]]
    newest = api.ok("GET", api.ws("/flow_runs"), params={"work_pool": "pool", "limit": 1})
    assert [r["id"] for r in newest] == [rb["id"]]
    assert api.get(api.ws("/flow_runs"), params={"state": "BOGUS"}).status_code == 422
    assert [r["id"] for r in api.ok("GET", api.ws("/flow_runs"), params={"flow_name": "other"})] == [rb["id"]]
    assert [r["id"] for r in api.ok("GET", api.ws("/flow_runs"), params={"tag": ["nightly", "eu"]})] == [ra["id"]]
    assert len(api.ok("GET", api.ws("/flow_runs"), params={"tag": "eu"})) == 2
    assert api.get(api.ws("/flow_runs"), params={"tag": [f"t{i}" for i in range(11)]}).status_code == 422


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/api_keys", {"expires_in_seconds": 251606994196}),
    ("POST", "/ws/service_accounts", {"name": "x", "expires_in_seconds": 73230419103733596767125504}),
    ("POST", "/ws/work_pools", {"name": "big", "type": "local:push", "concurrency_limit": 2**70}),
    ("POST", "/ws/work_pools/pool/queues", {"name": "q", "priority": 2**70}),
    ("POST", "/ws/deployments", {"flow_name": "f", "name": "d", "entrypoint": "f.py:f", "work_pool_name": "pool",
                                 "schedules": [{"interval": 1e300}]}),
    ("POST", "/ws/deployments", {"flow_name": "f", "name": "d", "entrypoint": "f.py:f", "work_pool_name": "pool",
                                 "job_variables": {"max_runtime_seconds": 10**12}}),
])
def test_out_of_range_numbers_are_422_not_500(api, method, path, body):
    """Regression: found by the API fuzzer (a huge expires_in_seconds overflowed datetime → 500)."""
    api.pool()
    response = api.request(method, path.replace("/ws", f"/api/workspaces/{api.workspace}"), json=body)
    assert response.status_code == 422, response.text


def test_far_future_runs_and_offsets_are_rejected(api):
    api.pool()
    dep = api.deployment()
    response = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={"scheduled_time": "9999-12-31T23:59:59Z"})
    assert response.status_code == 422 and "scheduled_time" in response.text
    assert api.get(api.ws("/flow_runs"), params={"offset": 2**70}).status_code == 422


def test_schedules_near_the_end_of_time_stop_quietly():
    from datetime import UTC, datetime

    from pushpool.control_plane.models import Schedule
    from pushpool.control_plane.services.schedules import occurrences

    schedule = Schedule(interval_seconds=86400 * 365, anchor_date=datetime(9990, 1, 1, tzinfo=UTC))
    assert len(occurrences(schedule, datetime(9995, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), 100)) <= 5


def test_extreme_filter_times_do_not_overflow(api):
    """Regression: found by the API fuzzer (0001-01-01T00:00+00:01 overflowed when converted to UTC)."""
    for value in ("0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"):
        assert api.get(api.ws("/flow_runs"), params={"scheduled_after": value}).status_code == 200
        assert api.get(api.ws("/flow_runs"), params={"scheduled_before": value}).status_code == 200


@pytest.mark.parametrize("path, body", [
    ("/work_pools/pool", {"paused": None}),
    ("/work_pools/pool", {"prefetch_seconds": None}),
    ("/work_pools/pool/queues/default", {"priority": None}),
    ("/work_pools/pool/queues/default", {"paused": None}),
])
def test_patching_a_required_field_to_null_is_422_and_keeps_the_record(api, path, body):
    """Regression: found by the API fuzzer ({"paused": null} stored an invalid pool; every read then failed)."""
    api.pool()
    before = api.ok("GET", api.ws(path))
    response = api.request("PATCH", api.ws(path), json=body)
    assert response.status_code == 422 and next(iter(body)) in response.json()["detail"]
    assert api.ok("GET", api.ws(path)) == before


def test_a_fargate_size_ecs_would_refuse_is_refused_when_saved(api):
    """ECS's rules (pushers.ecs_template) apply to a deployment and to a run's own variables, naming the variable."""
    api.pool("aws", type="ecs:push")
    bad = api.post(api.ws("/deployments"), json={"flow_name": "f", "name": "d", "entrypoint": "f.py:f",
                                                 "work_pool_name": "aws", "job_variables": {"memory": 999}})
    assert bad.status_code == 422 and "job_variables.memory: with cpu 256, Fargate takes 512" in bad.text
    dep = api.deployment(pool="aws", job_variables={"cpu": 1024, "memory": 2048})
    run = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={"job_variables": {"memory": 512}})
    assert run.status_code == 422 and "job_variables.memory: with cpu 1024" in run.text
    ec2 = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={
        "job_variables": {"launch_type": "EC2", "assign_public_ip": True}})
    assert ec2.status_code == 422 and "job_variables.assign_public_ip" in ec2.text
    assert api.run(dep["id"], job_variables={"memory": 4096})["job_variables"] == {"memory": 4096}
