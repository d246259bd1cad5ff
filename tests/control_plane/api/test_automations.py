"""Automations through the API with a fake clock: reactive and proactive triggers, each action, bad input."""

from __future__ import annotations

from pushpool.control_plane.services.automations import run_event_services

COMPLETED = "pushpool.flow-run.Completed"


def automation(api, name: str, trigger: dict, actions: list[dict], status: int = 201) -> dict:
    return api.ok("POST", api.ws("/automations"), status=status,
                  json={"name": name, "trigger": trigger, "actions": actions})


def finish(api, run_id: str, state: str = "COMPLETED") -> None:
    for step in ("PENDING", "RUNNING", state):
        api.ok("POST", api.ws(f"/flow_runs/{run_id}/set_state"), json={"type": step})


def runs_of(api, deployment_id: str) -> list[dict]:
    return api.ok("GET", api.ws("/flow_runs"), params={"deployment_id": deployment_id})


def event_names(api, prefix: str) -> list[str]:
    return [e["event"] for e in api.ok("GET", api.ws("/events"), params={"event": prefix, "order": "asc"})["events"]]


def test_a_completed_run_of_a_runs_b_with_a_parameter_from_a(api):
    api.pool()
    a = api.deployment("a", parameter_schema=None, parameters={"batch": 7})
    b = api.deployment("b")
    automation(api, "a-then-b", {"expect": [COMPLETED], "match_related": {
        "pushpool.resource.role": "deployment", "pushpool.resource.name": "flow/a"}},
        [{"type": "run-deployment", "deployment": "flow/b",
          "parameters": {"batch": "{{ flow_run.parameters.batch }}", "source": "{{ flow_run.name }}"}}])
    run = api.run(a["id"])
    finish(api, run["id"], "FAILED")
    assert runs_of(api, b["id"]) == []  # a failure is not a completion
    run = api.run(a["id"])
    finish(api, run["id"])
    [started] = runs_of(api, b["id"])
    assert started["parameters"] == {"batch": 7, "source": run["name"]} and "automation" in started["tags"]
    assert event_names(api, "pushpool.automation.") == ["pushpool.automation.triggered",
                                                         "pushpool.automation.action.executed"]
    finish(api, started["id"])  # b's own completion does not match flow/a
    assert len(runs_of(api, b["id"])) == 1


def test_threshold_within_and_for_each_and_pausing(api, clock):
    api.pool()
    dep = api.deployment("flaky")
    automation(api, "three-failures", {"expect": ["pushpool.flow-run.Failed"], "threshold": 3, "within": 60},
               [{"type": "pause-deployment"}])
    for _ in range(2):
        finish(api, api.run(dep["id"])["id"], "FAILED")
    clock.advance(120)  # the window ran out: counting starts again
    for _ in range(2):
        finish(api, api.run(dep["id"])["id"], "FAILED")
    assert api.ok("GET", api.ws(f"/deployments/{dep['id']}"))["paused"] is False
    finish(api, api.run(dep["id"])["id"], "FAILED")
    assert api.ok("GET", api.ws(f"/deployments/{dep['id']}"))["paused"] is True  # inferred from the event

    api.ok("PATCH", api.ws("/automations/three-failures"), json={"enabled": False})
    api.ok("PATCH", api.ws(f"/deployments/{dep['id']}"), json={"paused": False})
    for _ in range(3):
        finish(api, api.run(dep["id"])["id"], "FAILED")
    assert api.ok("GET", api.ws(f"/deployments/{dep['id']}"))["paused"] is False


def test_a_proactive_sla_fires_once_when_a_run_stays_running_and_not_when_it_completes(api, ctx, clock):
    api.pool()
    dep = api.deployment("slow")
    automation(api, "sla", {"posture": "Proactive", "after": ["pushpool.flow-run.Running"], "expect": [COMPLETED],
                            "within": 7200, "for_each": ["pushpool.resource.id"]},
               [{"type": "cancel-flow-run"}])
    late, on_time = api.run(dep["id"]), api.run(dep["id"])
    for run in (late, on_time):
        for step in ("PENDING", "RUNNING"):
            api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": step})
    clock.advance(3600)
    api.ok("POST", api.ws(f"/flow_runs/{on_time['id']}/set_state"), json={"type": "COMPLETED"})
    assert run_event_services(ctx) == 0
    clock.advance(3601)
    assert run_event_services(ctx) == 1
    assert run_event_services(ctx) == 0  # once
    assert api.ok("GET", api.ws(f"/flow_runs/{late['id']}"))["state"]["type"] == "CANCELLING"
    assert api.ok("GET", api.ws(f"/flow_runs/{on_time['id']}"))["state"]["type"] == "COMPLETED"
    assert event_names(api, "pushpool.automation.triggered") == ["pushpool.automation.triggered"]


def test_pool_actions_failures_are_events_and_bad_input_names_the_field(api):
    api.pool("gpu")
    dep = api.deployment(pool="gpu")
    automation(api, "pause-pool", {"expect": ["pushpool.flow-run.Crashed"]}, [{"type": "pause-work-pool"}])
    automation(api, "broken", {"expect": ["pushpool.flow-run.Crashed"]},
               [{"type": "run-deployment", "deployment": "flow/missing"}])
    finish(api, api.run(dep["id"])["id"], "CRASHED")
    assert api.ok("GET", api.ws("/work_pools/gpu"))["paused"] is True
    failures = api.ok("GET", api.ws("/events"), params={"event": "pushpool.automation.action.failed"})["events"]
    assert "deployment 'flow/missing' does not exist" in failures[0]["payload"]["reason"]

    api.ok("PATCH", api.ws("/work_pools/gpu"), json={"paused": False})
    automation(api, "bomb", {"expect": ["pushpool.flow-run.Crashed"]}, [
        {"type": "run-deployment", "deployment": "flow/dep", "parameters": {"x": "{{ 'a' * 10000000 }}"}},
        {"type": "run-deployment", "deployment": "flow/dep", "parameters": {
            "y": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}},
        {"type": "pause-work-pool"}])
    finish(api, api.run(dep["id"])["id"], "CRASHED")
    reasons = sorted(e["payload"]["reason"] for e in api.ok("GET", api.ws("/events"), params={
        "event": "pushpool.automation.action.failed"})["events"] if e["resource"]["pushpool.resource.name"] == "bomb")
    assert len(reasons) == 2 and "too long" in reasons[0] and "not allowed" in reasons[1]
    assert api.ok("GET", api.ws("/work_pools/gpu"))["paused"] is True  # the next action still ran

    def refused(body: dict) -> str:
        answer = api.request("POST", api.ws("/automations"), json=body)
        assert answer.status_code == 422, answer.text
        return answer.text

    assert "within" in refused({"name": "x", "trigger": {"posture": "Proactive", "after": ["a"]},
                                "actions": [{"type": "cancel-flow-run"}]})
    assert "actions" in refused({"name": "x", "trigger": {}, "actions": []})
    assert "send-email" in refused({"name": "x", "trigger": {}, "actions": [{"type": "send-email"}]})
    assert "template" in refused({"name": "x", "trigger": {}, "actions": [
        {"type": "run-deployment", "parameters": {"p": "{{ oops"}}]})
    assert api.request("POST", api.ws("/automations"), json={
        "name": "pause-pool", "trigger": {}, "actions": [{"type": "pause-work-pool"}]}).status_code == 409


def test_deployment_triggers_are_replaced_on_each_deploy(api):
    api.pool()
    upstream, downstream = api.deployment("up"), api.deployment("down")
    trigger = {"expect": [COMPLETED], "parameters": {"from_run": "{{ flow_run.id }}"},
               "match_related": {"pushpool.resource.id": f"pushpool.deployment.{upstream['id']}"}}
    made = api.ok("PUT", api.ws(f"/deployments/{downstream['id']}/triggers"), json=[trigger])
    assert [a["owner_deployment_id"] for a in made] == [downstream["id"]]
    again = api.ok("PUT", api.ws(f"/deployments/{downstream['id']}/triggers"), json=[trigger, {**trigger, "name": "2"}])
    assert len(api.ok("GET", api.ws("/automations"))) == 2 and {a["name"] for a in again} == {
        "flow/down trigger 1", "2"}
    both = [trigger, {**trigger, "name": "2"}]
    unchanged = api.ok("PUT", api.ws(f"/deployments/{downstream['id']}/triggers"), json=both)
    assert {a["id"] for a in unchanged} == {a["id"] for a in again}  # deployed again: kept, counting state too
    run = api.run(upstream["id"])
    finish(api, run["id"])
    started = runs_of(api, downstream["id"])
    assert len(started) == 2 and {r["parameters"]["from_run"] for r in started} == {run["id"]}
