"""Schedule materialisation: idempotent, per-schedule parameters, replaced on change."""

from __future__ import annotations

import threading
from datetime import timedelta

from pushpool.control_plane.models import FlowRunFilter
from pushpool.control_plane.services.scheduler import run_scheduler
from pushpool.control_plane.storage.sqlite import SqliteStore


def auto_runs(ctx, api, deployment_id):
    ws = ctx.store.get_workspace(api.workspace)
    return ctx.store.list_flow_runs(ws.id, FlowRunFilter(deployment_id=deployment_id, auto_scheduled=True,
                                                         sort="scheduled_asc"), limit=1000)


def gaps(runs) -> set[timedelta]:
    return {b.scheduled_time - a.scheduled_time for a, b in zip(runs, runs[1:], strict=False)}


def test_deploying_writes_the_next_runs_at_once_and_the_scheduler_fills_the_horizon(api, ctx, clock):
    wakes: list[str] = []
    ctx.wake_scheduler = lambda: wakes.append("schedule")
    api.pool()
    dep = api.deployment(schedules=[{"interval": 600}])
    # The request itself writes the next few minutes' runs, at least scheduler_min_runs (3) of them ...
    first = auto_runs(ctx, api, dep["id"])
    assert len(first) == 3 and wakes == ["schedule"]
    # ... and the pass it asked for fills the 1 h horizon: 6 runs, all in the future, 10 min apart.
    assert run_scheduler(ctx) == 3
    runs = auto_runs(ctx, api, dep["id"])
    assert len(runs) == 6
    assert {r.id for r in first} <= {r.id for r in runs}
    assert all(r.scheduled_time > clock.now() for r in runs)
    assert gaps(runs) == {timedelta(minutes=10)}


def test_a_deployments_own_request_writes_every_run_due_in_the_next_minutes(api, ctx, clock):
    ctx.wake_scheduler = None  # as on Lambda: the minute tick fills the horizon
    api.pool()
    dep = api.deployment(schedules=[{"interval": 5}])
    runs = auto_runs(ctx, api, dep["id"])
    # Every 5 s for IMMEDIATE_SECONDS (180 s): a tick that comes a minute later finds them all.
    assert len(runs) == 36
    assert runs[-1].scheduled_time - clock.now() == timedelta(seconds=180)


def test_one_pass_writes_many_deployments_in_few_transactions(api, ctx, clock, monkeypatch):
    import pushpool.control_plane.services.scheduler as scheduler

    ctx.wake_scheduler = None
    api.pool()
    for i in range(5):
        api.deployment(name=f"d{i}", schedules=[{"interval": 60}])
    monkeypatch.setattr(scheduler, "BATCH_RUNS", 100)
    batches: list[int] = []
    original = ctx.store.create_flow_runs_if_absent

    def counting(runs):
        batches.append(len(runs))
        return original(runs)

    monkeypatch.setattr(ctx.store, "create_flow_runs_if_absent", counting)
    # 5 deployments × (60 runs in the hour − 3 written at deploy): 285 runs in batches of ≥ 100.
    assert run_scheduler(ctx) == 285
    assert len(batches) == 3 and sum(batches) == 285


def test_repeated_ticks_create_nothing_new_until_time_moves(api, ctx, clock):
    api.pool()
    dep = api.deployment(schedules=[{"interval": 600}])
    before = {r.id for r in auto_runs(ctx, api, dep["id"])}
    for _ in range(3):
        assert run_scheduler(ctx) == 0
    assert {r.id for r in auto_runs(ctx, api, dep["id"])} == before
    clock.advance(minutes=30)
    assert run_scheduler(ctx) == 3
    assert len(auto_runs(ctx, api, dep["id"])) == 9


def test_concurrent_ticks_on_separate_connections_never_duplicate(api, ctx, clock, settings, tmp_path):
    api.pool()
    dep = api.deployment(schedules=[{"cron": "* * * * *"}])
    clock.advance(hours=3)
    counts: list[int] = []
    from dataclasses import replace

    def tick() -> None:
        other = replace(ctx, store=SqliteStore(ctx.store.path))
        counts.append(run_scheduler(other))
        other.store.close()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = auto_runs(ctx, api, dep["id"])
    times = [r.scheduled_time for r in runs]
    assert len(times) == len(set(times))
    assert sum(counts) == 60  # exactly the new hour's runs, however the ticks interleaved


def test_per_schedule_parameters_are_merged_over_the_deployment(api, ctx):
    api.pool()
    dep = api.deployment(parameters={"name": "base", "n": 1},
                         schedules=[{"cron": "0 * * * *", "parameters": {"name": "hourly"}},
                                    {"cron": "30 * * * *"}])
    params = {r.scheduled_time.minute: r.parameters for r in auto_runs(ctx, api, dep["id"])}
    assert params[0] == {"name": "hourly", "n": 1}
    assert params[30] == {"name": "base", "n": 1}


def test_min_runs_for_sparse_schedules(api, ctx):
    api.pool()
    dep = api.deployment(schedules=[{"cron": "0 3 * * *"}])
    assert len(auto_runs(ctx, api, dep["id"])) == ctx.settings.scheduler_min_runs


def test_changing_the_schedule_replaces_future_auto_runs_only(api, ctx):
    api.pool()
    dep = api.deployment(schedules=[{"interval": 600}])
    manual = api.run(dep["id"])
    api.deployment(schedules=[{"interval": 900}])  # deploy again: update in place
    runs = auto_runs(ctx, api, dep["id"])
    assert len(runs) == 4
    assert gaps(runs) == {timedelta(minutes=15)}
    assert api.get(api.ws(f"/flow_runs/{manual['id']}")).status_code == 200
    assert len(api.ok("GET", api.ws("/deployments"))) == 1


def test_pausing_a_deployment_removes_its_future_runs(api, ctx, clock):
    api.pool()
    dep = api.deployment(schedules=[{"interval": 600}])
    api.ok("PATCH", api.ws(f"/deployments/{dep['id']}"), json={"paused": True})
    assert auto_runs(ctx, api, dep["id"]) == []
    clock.advance(hours=1)
    assert run_scheduler(ctx) == 0
    api.ok("PATCH", api.ws(f"/deployments/{dep['id']}"), json={"paused": False})
    assert len(auto_runs(ctx, api, dep["id"])) == 6
