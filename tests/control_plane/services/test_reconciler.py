"""Reconciliation: crash classification, cancellation, runtime limit, cleanup."""

from __future__ import annotations

import pytest

from pushpool.control_plane.services.dispatcher import Dispatcher
from pushpool.control_plane.services.reconciler import Reconciler
from pushpool.pushers.base import InfraState, InfraStatus


@pytest.fixture
def submitted(api, ctx, fake_pusher):
    """A run submitted to the fake pusher, and a function to reconcile once."""
    api.pool()
    run = api.run(api.deployment()["id"])
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    dispatcher.close()
    assert fake_pusher.jobs
    return run, lambda: Reconciler(ctx).run_once()


def state(api, run_id):
    return api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["state"]


@pytest.mark.parametrize("status, expected", [
    (InfraStatus(InfraState.EXITED, 1, "exit code 1"), "Infrastructure exited: exit code 1"),
    (InfraStatus(InfraState.EXITED, 137, "exit code 137: killed (SIGKILL), likely out of memory"),
     "likely out of memory"),
    (InfraStatus(InfraState.EXITED, 0), "exited with code 0 without reporting a final state"),
    (InfraStatus(InfraState.MISSING, reason="task not found"), "Infrastructure vanished: task not found"),
])
def test_finished_infrastructure_of_an_unfinished_run_is_a_crash(api, submitted, fake_pusher, status, expected):
    run, reconcile = submitted
    fake_pusher.statuses[f"fake-{run['id']}"] = status
    reconcile()
    s = state(api, run["id"])
    assert s["type"] == "CRASHED" and expected in s["message"]
    reconcile()  # final and gone: cleaned up exactly once
    reconcile()
    assert fake_pusher.cleaned == [f"fake-{run['id']}"]


def test_a_run_that_reported_completion_is_left_alone_and_cleaned(api, submitted, fake_pusher, ctx):
    run, reconcile = submitted
    api.as_key(api.key).ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "RUNNING"})
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "COMPLETED"})
    reconcile()  # still running (exiting): nothing to do yet
    assert fake_pusher.cleaned == [] and fake_pusher.cancelled == []
    fake_pusher.finish(run["id"], 0)
    reconcile()
    assert state(api, run["id"])["type"] == "COMPLETED"
    assert fake_pusher.cleaned == [f"fake-{run['id']}"]


def test_cancelling_stops_the_infrastructure_then_cancels(api, submitted, fake_pusher):
    run, reconcile = submitted
    assert api.ok("POST", api.ws(f"/flow_runs/{run['id']}/cancel"))["state"]["type"] == "CANCELLING"
    reconcile()
    assert fake_pusher.cancelled == [f"fake-{run['id']}"]
    assert state(api, run["id"])["type"] == "CANCELLING"
    fake_pusher.finish(run["id"], 143)
    reconcile()
    assert state(api, run["id"])["type"] == "CANCELLED"


def test_runtime_limit_stops_and_crashes(api, submitted, fake_pusher, clock):
    run, reconcile = submitted
    clock.advance(hours=23)
    reconcile()
    assert state(api, run["id"])["type"] == "PENDING"
    clock.advance(hours=1, seconds=1)
    reconcile()
    s = state(api, run["id"])
    assert s["type"] == "CRASHED" and "maximum runtime (86400s)" in s["message"]
    assert fake_pusher.cancelled == [f"fake-{run['id']}"]
    reconcile()  # still running after the crash: stopped again until it is gone
    assert fake_pusher.cancelled == [f"fake-{run['id']}"] * 2
    fake_pusher.finish(run["id"], 137)
    reconcile()
    assert fake_pusher.cleaned == [f"fake-{run['id']}"]


def test_runtime_limit_comes_from_the_job_variable(api, ctx, fake_pusher, clock):
    api.pool()
    run = api.run(api.deployment(job_variables={"max_runtime_seconds": 60})["id"])
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    dispatcher.close()
    clock.advance(61)
    Reconciler(ctx).run_once()
    assert "maximum runtime (60s)" in state(api, run["id"])["message"]


def test_crash_retries_submit_the_run_again_under_a_new_key_and_the_deployment_may_say_none(api, ctx, fake_pusher,
                                                                                           clock):
    api.pool("retrying", crash_retries=2, crash_retry_delay_seconds=30)
    retried = api.deployment(name="retried", pool="retrying")
    never = api.deployment(name="never", pool="retrying", crash_retries=0)
    runs = {d["name"]: api.run(d["id"]) for d in (retried, never)}
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    for run in runs.values():
        fake_pusher.finish(run["id"], 137, "exit code 137: killed (SIGKILL), likely out of memory")
    Reconciler(ctx).run_once()
    assert state(api, runs["never"]["id"])["type"] == "CRASHED"  # the deployment's 0 wins over the pool's 2
    again = api.ok("GET", api.ws(f"/flow_runs/{runs['retried']['id']}"))
    assert (again["state"]["type"], again["state"]["name"], again["crash_attempts"]) == (
        "SCHEDULED", "AwaitingRetry", 1)
    assert again["infra_id"] is None and f"fake-{runs['retried']['id']}" in fake_pusher.cleaned
    assert "in 30s" in again["state"]["message"]
    dispatcher.run_once()  # not due yet: the delay holds
    assert [j.crash_attempt for j in fake_pusher.jobs if j.flow_run_id == runs["retried"]["id"]] == [0]
    clock.advance(31)
    dispatcher.run_once()
    jobs = [j for j in fake_pusher.jobs if j.flow_run_id == runs["retried"]["id"]]
    assert [(j.crash_attempt, j.idempotency_key) for j in jobs] == [
        (0, runs["retried"]["id"]), (1, f"{runs['retried']['id']}-r1")]
    dispatcher.close()


def test_a_pool_whose_status_call_breaks_does_not_stop_the_others(api, ctx, fake_pusher, monkeypatch):
    """Issue 23: an unexpected error from one pool's cloud (not a PushpoolError) used to end the whole pass."""
    api.pool("first")
    api.pool("second")
    runs = {name: api.run(api.deployment(name=name, pool=name)["id"]) for name in ("first", "second")}
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    dispatcher.close()
    for run in runs.values():
        fake_pusher.statuses[f"fake-{run['id']}"] = InfraStatus(InfraState.EXITED, 1, "exit code 1")
    real_status = fake_pusher.status
    calls = []

    def status(infra_ids):
        calls.append(infra_ids)
        if len(calls) == 1:
            raise KeyError("a bug in one cloud's answer")
        return real_status(infra_ids)

    monkeypatch.setattr(fake_pusher, "status", status)
    Reconciler(ctx).run_once()
    crashed = [name for name, run in runs.items() if state(api, run["id"])["type"] == "CRASHED"]
    assert len(calls) == 2 and len(crashed) == 1
