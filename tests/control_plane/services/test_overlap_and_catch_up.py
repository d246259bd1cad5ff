"""A deployment's overlap policy (a run due while the previous one is active) and catch-up (runs missed while the
control plane or the pool was down), with the fake clock and the real dispatcher."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from pushpool.control_plane.services.dispatcher import Dispatcher
from pushpool.control_plane.services.reconciler import Reconciler
from pushpool.control_plane.services.scheduler import run_scheduler
from pushpool.control_plane.storage.sqlite import SqliteStore


def state_of(api, run_id: str) -> dict:
    return api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["state"]


def start_running(api, dispatcher, fake_pusher, overlap: str) -> tuple[dict, dict]:
    """A deployment with ``overlap`` whose first run is RUNNING."""
    api.pool()
    dep = api.deployment(overlap=overlap)
    first = api.run(dep["id"])
    dispatcher.run_once()
    api.ok("POST", api.ws(f"/flow_runs/{first['id']}/set_state"), json={"type": "RUNNING"})
    return dep, first


def test_allow_runs_them_side_by_side(api, dispatcher, fake_pusher, clock):
    dep, first = start_running(api, dispatcher, fake_pusher, "allow")
    second = api.run(dep["id"])
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs] == [first["id"], second["id"]]


def test_skip_drops_a_run_due_while_the_previous_is_active(api, dispatcher, fake_pusher, clock):
    dep, first = start_running(api, dispatcher, fake_pusher, "skip")
    clock.advance(1)
    second = api.run(dep["id"])
    dispatcher.run_once()
    skipped = state_of(api, second["id"])
    assert (skipped["type"], skipped["name"]) == ("CANCELLED", "Skipped") and "overlap skip" in skipped["message"]
    assert state_of(api, first["id"])["type"] == "RUNNING" and len(fake_pusher.jobs) == 1


def test_buffer_one_keeps_one_waiting_and_drops_the_rest(api, ctx, dispatcher, fake_pusher, clock):
    dep, first = start_running(api, dispatcher, fake_pusher, "buffer_one")
    clock.advance(1)
    waiting = api.run(dep["id"])
    clock.advance(1)
    dropped = api.run(dep["id"])
    dispatcher.run_once()
    assert state_of(api, waiting["id"])["type"] == "SCHEDULED"
    assert state_of(api, dropped["id"])["name"] == "Skipped"
    assert "overlap buffer_one" in state_of(api, dropped["id"])["message"]
    api.ok("POST", api.ws(f"/flow_runs/{first['id']}/set_state"), json={"type": "COMPLETED"})
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs] == [first["id"], waiting["id"]]


def test_cancel_other_stops_the_active_run_and_starts_the_newest(api, ctx, dispatcher, fake_pusher, clock):
    dep, first = start_running(api, dispatcher, fake_pusher, "cancel_other")
    clock.advance(1)
    older = api.run(dep["id"])
    clock.advance(1)
    newest = api.run(dep["id"])
    dispatcher.run_once()
    assert state_of(api, older["id"])["name"] == "Skipped"  # of two due at once, the newest is kept
    cancelling = state_of(api, first["id"])
    assert cancelling["type"] == "CANCELLING" and "overlap cancel_other" in cancelling["message"]
    assert state_of(api, newest["id"])["type"] == "SCHEDULED"  # waits for the slot
    fake_pusher.finish(first["id"], exit_code=143)
    Reconciler(ctx).run_once()  # the infrastructure stopped: CANCELLED, the slot is free
    assert state_of(api, first["id"])["type"] == "CANCELLED"
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs] == [first["id"], newest["id"]]


def test_overlap_holds_with_several_dispatchers_at_once(api, ctx, fake_pusher, clock):
    api.pool()
    dep = api.deployment(overlap="skip")
    runs = [api.run(dep["id"]) for _ in range(12)]
    dispatchers = [Dispatcher(replace(ctx, store=SqliteStore(ctx.store.path))) for _ in range(4)]
    threads = [threading.Thread(target=d.run_once) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in dispatchers:
        d.close()
    types = [state_of(api, r["id"])["type"] for r in runs]
    assert len(fake_pusher.jobs) == 1 and types.count("PENDING") == 1 and types.count("CANCELLED") == 11


def test_overlap_with_a_concurrency_limit_above_one_is_refused_naming_both(api):
    api.pool()
    response = api.post(api.ws("/deployments"), json={
        "flow_name": "f", "name": "d", "entrypoint": "flows.py:main", "work_pool_name": "pool", "overlap": "skip",
        "concurrency_limit": 3})
    assert response.status_code == 422 and "overlap" in response.text and "concurrency_limit" in response.text


# --------------------------------------------------------------------------- catch-up

HOURLY = [{"interval": 3600}]
OUTAGE = timedelta(hours=24, minutes=30)  # the control plane (scheduler and dispatcher) was down this long


def after_an_outage(api, ctx, dispatcher, fake_pusher, clock, catch_up: dict | None) -> list:
    """An hourly deployment whose control plane was down a day; the scheduled times of the runs it then submits."""
    api.pool()
    fields = {"late_run_policy": catch_up} if catch_up is not None else {}
    api.deployment(schedules=HOURLY, **fields)  # writes the next runs at once (the next 3 hours)
    clock.advance(OUTAGE.total_seconds())
    run_scheduler(ctx)
    dispatcher.run_once()
    return sorted(api.ok("GET", api.ws(f"/flow_runs/{job.flow_run_id}"))["scheduled_time"]
                  for job in fake_pusher.jobs)


def test_catch_up_all_runs_every_missed_occurrence_even_those_never_written(api, ctx, dispatcher, fake_pusher,
                                                                           clock):
    submitted = after_an_outage(api, ctx, dispatcher, fake_pusher, clock, {"mode": "run_all"})
    assert len(submitted) == 24  # 13:00 on the first day to 12:00 on the next, hourly


def test_catch_up_latest_runs_only_the_newest_missed_occurrence(api, ctx, dispatcher, fake_pusher, clock):
    submitted = after_an_outage(api, ctx, dispatcher, fake_pusher, clock, {"mode": "latest_only"})
    assert submitted == [(clock.now() - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")]


def test_catch_up_none_runs_no_missed_occurrence_and_skips_those_written(api, ctx, dispatcher, fake_pusher, clock):
    submitted = after_an_outage(api, ctx, dispatcher, fake_pusher, clock,
                                {"mode": "skip_late", "skip_after_seconds": 0})
    assert submitted == []
    skipped = api.ok("GET", api.ws("/flow_runs"), params={"state": "CANCELLED"})
    assert len(skipped) == 3 and all("deployment late-run policy" in r["state"]["message"] for r in skipped)


def test_catch_up_within_a_window_runs_the_recent_ones(api, ctx, dispatcher, fake_pusher, clock):
    submitted = after_an_outage(api, ctx, dispatcher, fake_pusher, clock,
                                {"mode": "skip_late", "skip_after_seconds": 3 * 3600})
    assert len(submitted) == 3  # 10:00, 11:00 and 12:00 are within 3 h of 12:30


def test_without_catch_up_the_pools_policy_runs_only_what_was_written(api, ctx, dispatcher, fake_pusher, clock):
    assert len(after_an_outage(api, ctx, dispatcher, fake_pusher, clock, None)) == 3


def test_catch_up_latest_after_the_pool_was_paused(api, ctx, dispatcher, fake_pusher, clock):
    api.pool(paused=True)
    api.deployment(schedules=HOURLY, late_run_policy={"mode": "latest_only"})
    for _ in range(6):  # the control plane runs all along; the pool is paused for six hours
        clock.advance(3600)
        run_scheduler(ctx)
        dispatcher.run_once()
    assert fake_pusher.jobs == []
    api.ok("PATCH", api.ws("/work_pools/pool"), json={"paused": False})
    dispatcher.run_once()
    assert len(fake_pusher.jobs) == 1
