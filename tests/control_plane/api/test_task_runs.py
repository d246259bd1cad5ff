"""Task runs reported by a run's runner, in batches, and listed for anyone who may read the run."""

from __future__ import annotations

from tests.control_plane.api.test_auth import run_token_for


def report(i: int, state: str = "COMPLETED", **fields) -> dict:
    return {"id": f"t{i:05d}", "name": f"add-{i}", "task_key": "flows.add", "state_type": state,
            "state_name": state.title(), "attempts": 1, **fields}


def test_the_runner_reports_batches_and_anyone_who_may_read_lists_them(api, ctx, fake_pusher):
    token, run, other, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/task_runs")
    batch = [report(i, "RUNNING") for i in range(3)] + [report(1, "COMPLETED", cache_hit=True)]
    assert token.ok("POST", path, json={"task_runs": batch}, status=202) == {"accepted": 3}
    token.ok("POST", path, json={"task_runs": [report(2, "FAILED", error="ValueError: no")]})
    listed = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/task_runs"))
    assert [(t["name"], t["state_type"]) for t in listed] == [("add-0", "RUNNING"), ("add-1", "COMPLETED"),
                                                             ("add-2", "FAILED")]
    assert listed[1]["cache_hit"] and listed[2]["error"] == "ValueError: no"
    assert all(t["flow_run_id"] == run["id"] and t["workspace_id"] for t in listed)
    page = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/task_runs"), params={"after": "t00000", "limit": 1})
    assert [t["name"] for t in page] == ["add-1"]
    viewer = api.as_key(api.user("vera", role="viewer"))
    assert len(viewer.ok("GET", viewer.ws(f"/flow_runs/{run['id']}/task_runs"))) == 3
    assert api.ok("GET", api.ws(f"/flow_runs/{other['id']}/task_runs")) == []


def test_a_run_token_reports_only_for_its_own_run_and_viewers_never(api, ctx, fake_pusher):
    token, run, other, _ = run_token_for(api, ctx, fake_pusher)
    body = {"task_runs": [report(0)]}
    assert token.post(token.ws(f"/flow_runs/{other['id']}/task_runs"), json=body).status_code == 404
    assert token.get(token.ws(f"/flow_runs/{other['id']}/task_runs")).status_code == 404
    mislabelled = token.post(token.ws(f"/flow_runs/{run['id']}/task_runs"),
                             json={"task_runs": [report(0, flow_run_id=other["id"])]})
    assert mislabelled.status_code == 422 and "task_runs.0.flow_run_id" in mislabelled.text
    viewer = api.as_key(api.user("vic", role="viewer"))
    assert viewer.post(viewer.ws(f"/flow_runs/{run['id']}/task_runs"), json=body).status_code == 403
    assert api.ok("GET", api.ws(f"/flow_runs/{other['id']}/task_runs")) == []
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}/task_runs")) == []


def test_bad_reports_are_refused_whole_with_the_field_named(api, ctx, fake_pusher):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/task_runs")
    for bad, field in ((report(0, "CRASHED"), "state_type"), (report(0, name="x" * 201), "name"),
                       ({**report(0), "id": "../../etc"}, "id"), ({**report(0), "extra": 1}, "extra")):
        response = token.post(path, json={"task_runs": [report(1), bad]})
        assert response.status_code == 422 and field in response.text, (field, response.text)
    too_many = token.post(path, json={"task_runs": [report(i) for i in range(1001)]})
    assert too_many.status_code == 422
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}/task_runs")) == []


def test_a_run_cannot_report_more_than_its_cap(api_with):
    capped = api_with(max_task_run_reports_per_flow_run=5)
    capped.pool()
    run = capped.run(capped.deployment()["id"])
    path = capped.ws(f"/flow_runs/{run['id']}/task_runs")  # an owner may report too (tests, imports)
    capped.ok("POST", path, json={"task_runs": [report(i) for i in range(4)]})
    refused = capped.post(path, json={"task_runs": [report(i) for i in range(4, 6)]})
    assert refused.status_code == 413 and "PUSHPOOL_MAX_TASK_RUN_REPORTS_PER_FLOW_RUN" in refused.json()["detail"]
    assert len(capped.ok("GET", path)) == 4
