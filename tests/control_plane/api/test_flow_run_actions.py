"""Retrying and deleting flow runs, and the flows of a workspace."""

from __future__ import annotations

import pytest

from pushpool.control_plane.models import State, StateType


def finish(ctx, run: dict, type_: StateType = StateType.FAILED, **changes) -> None:
    if changes:
        ctx.store.update_flow_run(run["id"], changes)
    ctx.store.set_flow_run_state(run["id"], State(type=type_, name=type_.value.title(), timestamp=ctx.clock.now()))


def test_retry_makes_a_new_run_with_the_same_inputs_and_leaves_the_original(api, ctx):
    api.pool()
    dep = api.deployment(parameter_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    first = api.run(dep["id"], parameters={"n": 3}, job_variables={"env": {"MODE": "x"}}, tags=["adhoc"])
    finish(ctx, first)
    again = api.ok("POST", api.ws(f"/flow_runs/{first['id']}/retry"), status=201)
    assert again["id"] != first["id"] and again["retry_of"] == first["id"]
    assert again["state"]["type"] == "SCHEDULED" and again["deployment_id"] == dep["id"]
    assert (again["parameters"], again["job_variables"], again["tags"]) == (
        first["parameters"], first["job_variables"], first["tags"])
    original = api.ok("GET", api.ws(f"/flow_runs/{first['id']}"))
    assert original["state"]["type"] == "FAILED" and original["retry_of"] is None


def test_only_a_finished_run_is_retried(api):
    api.pool()
    run = api.run(api.deployment()["id"])
    response = api.post(api.ws(f"/flow_runs/{run['id']}/retry"))
    assert response.status_code == 409 and "only a finished run can be retried" in response.json()["detail"]
    assert len(api.ok("GET", api.ws("/flow_runs"))) == 1


def test_a_run_of_a_deleted_deployment_cannot_be_retried(api, ctx):
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"])
    finish(ctx, run, StateType.COMPLETED)
    api.ok("DELETE", api.ws(f"/deployments/{dep['id']}"))
    response = api.post(api.ws(f"/flow_runs/{run['id']}/retry"))
    assert response.status_code == 404 and "flow/dep" in response.json()["detail"]


def test_a_runner_cannot_retry_a_run_whose_variables_only_a_developer_may_set(api, ctx):
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"], job_variables={"command": "python -m special"})  # an owner may set it
    finish(ctx, run)
    runner = api.as_key(api.user("rita", role="runner"))
    response = runner.post(runner.ws(f"/flow_runs/{run['id']}/retry"))
    assert response.status_code == 403 and "job_variables.command" in response.json()["detail"]
    viewer = api.as_key(api.user("vera", role="viewer"))
    assert viewer.post(viewer.ws(f"/flow_runs/{run['id']}/retry")).status_code == 403
    assert len(api.ok("GET", api.ws("/flow_runs"))) == 1
    plain = api.run(dep["id"])
    finish(ctx, plain)
    assert runner.ok("POST", runner.ws(f"/flow_runs/{plain['id']}/retry"))["retry_of"] == plain["id"]


def test_delete_a_finished_or_unstarted_run(api, ctx):
    api.pool()
    dep = api.deployment()
    done, waiting = api.run(dep["id"]), api.run(dep["id"])
    finish(ctx, done, StateType.COMPLETED)
    for run in (done, waiting):
        api.ok("DELETE", api.ws(f"/flow_runs/{run['id']}"), status=204)
        assert api.get(api.ws(f"/flow_runs/{run['id']}")).status_code == 404
        assert api.get(api.ws(f"/flow_runs/{run['id']}/states")).status_code == 404
    assert api.ok("GET", api.ws("/flow_runs")) == []
    assert api.request("DELETE", api.ws(f"/flow_runs/{done['id']}")).status_code == 404


@pytest.mark.parametrize("state, changes, hint", [
    (StateType.RUNNING, {"infra_id": "task-1"}, "cancel it first"),
    (StateType.PENDING, {}, "cancel it first"),
    (StateType.FAILED, {"infra_id": "task-1"}, "cleaned up"),  # its infrastructure is not cleaned up yet
])
def test_a_run_with_live_infrastructure_is_not_deleted(api, ctx, state, changes, hint):
    api.pool()
    run = api.run(api.deployment()["id"])
    finish(ctx, run, state, **changes)
    response = api.request("DELETE", api.ws(f"/flow_runs/{run['id']}"))
    assert response.status_code == 409 and hint in response.json()["detail"]
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))["state"]["type"] == state.value


def test_a_finished_run_is_deleted_once_cleaned_up_or_when_its_pool_is_gone(api, ctx):
    api.pool()
    api.pool("other")
    run = api.run(api.deployment()["id"])
    finish(ctx, run, StateType.CRASHED, infra_id="task-1", cleaned_up=True)
    api.ok("DELETE", api.ws(f"/flow_runs/{run['id']}"), status=204)
    d2 = api.deployment(name="d2", pool="other")
    orphan = api.run(d2["id"])
    finish(ctx, orphan, StateType.FAILED, infra_id="task-2")
    api.ok("DELETE", api.ws(f"/deployments/{d2['id']}"))
    api.ok("DELETE", api.ws("/work_pools/other"))
    api.ok("DELETE", api.ws(f"/flow_runs/{orphan['id']}"), status=204)  # nobody would ever clean it up


def test_only_developers_and_owners_delete_runs(api, ctx):
    api.pool()
    run = api.run(api.deployment()["id"])
    for role in ("viewer", "runner"):
        caller = api.as_key(api.user(f"u-{role}", role=role))
        assert caller.request("DELETE", caller.ws(f"/flow_runs/{run['id']}")).status_code == 403
    developer = api.as_key(api.user("dev", role="developer"))
    developer.ok("DELETE", developer.ws(f"/flow_runs/{run['id']}"), status=204)


def test_flows_are_listed_with_their_deployments(api):
    api.pool()
    assert api.ok("GET", api.ws("/flows")) == []
    api.deployment(name="nightly", flow_name="etl")
    api.deployment(name="hourly", flow_name="etl")
    api.deployment(name="once", flow_name="report")
    flows = api.ok("GET", api.ws("/flows"))
    assert [(f["name"], f["deployments"]) for f in flows] == [("etl", ["hourly", "nightly"]), ("report", ["once"])]
    assert all(f["created"] <= f["updated"] for f in flows)


def test_a_result_comes_only_with_completed_and_is_bounded(api, ctx, fake_pusher):
    from tests.control_plane.api.test_auth import run_token_for

    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/set_state")
    token.ok("POST", path, json={"type": "RUNNING"})
    early = token.post(path, json={"type": "FAILED", "result": {"value": 1}})
    assert early.status_code == 422 and "only a COMPLETED state carries a result" in early.text
    huge = token.post(path, json={"type": "COMPLETED", "result": {"value": "x" * 70_000}})
    assert huge.status_code == 422 and "result_storage" in huge.text
    done = token.ok("POST", path, json={"type": "COMPLETED", "result": {"value": {"rows": 3}}})
    assert done["result"] == {"value": {"rows": 3}}
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))["result"] == {"value": {"rows": 3}}


def test_a_running_run_reenters_running_only_for_its_flows_retries(api, ctx, fake_pusher):
    from tests.control_plane.api.test_auth import run_token_for

    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/set_state")
    token.ok("POST", path, json={"type": "RUNNING", "message": "Started by runner a"})
    second = token.post(path, json={"type": "RUNNING", "message": "Started by runner b"})
    assert second.status_code == 409  # a second runner of the same run is told not to start
    waiting = token.ok("POST", path, json={"type": "RUNNING", "name": "AwaitingRetry", "message": "attempt 1 failed"})
    assert (waiting["state"]["type"], waiting["state"]["name"]) == ("RUNNING", "AwaitingRetry")
    assert token.ok("POST", path, json={"type": "RUNNING", "name": "Retrying"})["state"]["name"] == "Retrying"
    names = [s["name"] for s in api.ok("GET", api.ws(f"/flow_runs/{run['id']}/states"))]
    assert names[-3:] == ["Running", "AwaitingRetry", "Retrying"]
