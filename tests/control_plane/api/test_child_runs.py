"""Child runs: started by a running flow's token, watched by it, bounded, cancelled with their parent."""

from __future__ import annotations

from pushpool.control_plane.services.dispatcher import Dispatcher
from tests.control_plane.api.test_auth import run_token_for


def running_parent(api, ctx, fake_pusher):
    token, run, _, dep = run_token_for(api, ctx, fake_pusher)
    token.ok("POST", token.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "RUNNING"})
    api.deployment(name="child")
    return token, run


def test_a_running_flow_starts_and_watches_a_child_that_cannot_reach_it(api, ctx, fake_pusher):
    token, parent = running_parent(api, ctx, fake_pusher)
    child = token.ok("POST", token.ws(f"/flow_runs/{parent['id']}/children"), status=201,
                     json={"deployment": "flow/child", "parameters": {"day": "mon"}})
    assert (child["parent_flow_run_id"], child["depth"], child["deployment_name"]) == (parent["id"], 1, "child")
    assert token.ok("GET", token.ws(f"/flow_runs/{child['id']}"))["id"] == child["id"]  # it may watch it
    assert token.post(token.ws(f"/flow_runs/{child['id']}/cancel")).status_code == 403  # not act on it
    assert [c["id"] for c in api.ok("GET", api.ws(f"/flow_runs/{parent['id']}/children"))] == [child["id"]]
    d = Dispatcher(ctx)
    d.run_once()
    d.close()
    child_token = api.as_key(next(j for j in fake_pusher.jobs if j.flow_run_id == child["id"]).env[
        "PUSHPOOL_RUN_TOKEN"])
    assert child_token.get(child_token.ws(f"/flow_runs/{parent['id']}")).status_code == 404
    assert child_token.post(child_token.ws(f"/flow_runs/{parent['id']}/set_state"),
                            json={"type": "FAILED"}).status_code == 404


def test_children_need_a_running_parent_a_known_deployment_and_plain_variables(api, ctx, fake_pusher):
    token, parent = running_parent(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{parent['id']}/children")
    missing = token.post(path, json={"deployment": "flow/nope"})
    assert missing.status_code == 404 and "flow/nope" in missing.text
    forbidden = token.post(path, json={"deployment": "flow/child", "job_variables": {"command": "sh -c evil"}})
    assert forbidden.status_code == 403 and "job_variables.command" in forbidden.text
    assert token.post(path, json={"deployment": "no-slash"}).status_code == 422
    token.ok("POST", token.ws(f"/flow_runs/{parent['id']}/set_state"), json={"type": "COMPLETED"})
    late = token.post(path, json={"deployment": "flow/child"})
    assert late.status_code == 409 and "only a running flow" in late.text
    assert api.ok("GET", api.ws(f"/flow_runs/{parent['id']}/children")) == []


def test_fan_out_and_depth_are_bounded(api_with):
    small = api_with(max_child_runs_per_flow_run=2, max_flow_run_depth=2)
    small.pool()
    dep = small.deployment()
    run = small.run(dep["id"])
    ctx = small.client.app.state.ctx
    from pushpool.control_plane.models import State, StateType

    def start(parent_id: str):
        return small.post(small.ws(f"/flow_runs/{parent_id}/children"), json={"deployment": "flow/dep"})

    ctx.store.set_flow_run_state(run["id"], State(type=StateType.RUNNING, name="Running", timestamp=ctx.clock.now()))
    first = start(run["id"]).json()
    start(run["id"])
    too_many = start(run["id"])
    assert too_many.status_code == 413 and "PUSHPOOL_MAX_CHILD_RUNS_PER_FLOW_RUN" in too_many.text
    ctx.store.set_flow_run_state(first["id"], State(type=StateType.RUNNING, name="Running",
                                                    timestamp=ctx.clock.now()))
    grandchild = start(first["id"]).json()
    assert grandchild["depth"] == 2
    ctx.store.set_flow_run_state(grandchild["id"], State(type=StateType.RUNNING, name="Running",
                                                         timestamp=ctx.clock.now()))
    too_deep = start(grandchild["id"])
    assert too_deep.status_code == 409 and "PUSHPOOL_MAX_FLOW_RUN_DEPTH" in too_deep.text


def test_cancelling_a_parent_cancels_its_children(api, ctx, fake_pusher):
    token, parent = running_parent(api, ctx, fake_pusher)
    children = [token.ok("POST", token.ws(f"/flow_runs/{parent['id']}/children"), json={"deployment": "flow/child"})
                for _ in range(2)]
    api.ok("POST", api.ws(f"/flow_runs/{parent['id']}/cancel"))
    for child in children:
        assert api.ok("GET", api.ws(f"/flow_runs/{child['id']}"))["state"]["type"] == "CANCELLED"
