"""Dispatch: claims, limits, priorities, retries, leases, late runs, exactly-once submission."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from pushpool.control_plane.services.dispatcher import Dispatcher, apply_late_policies
from pushpool.control_plane.services.reconciler import Reconciler
from pushpool.control_plane.storage.sqlite import SqliteStore
from tests.fakes.crashes import die_after_first_submit, dispatch_crash_then_restart


def state_of(api, run_id: str) -> dict:
    return api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["state"]


def test_submitted_job_carries_the_run_context_and_rendered_variables(api, ctx, dispatcher, fake_pusher):
    api.pool(base_job_template=None)
    dep = api.deployment(job_variables={"env": {"A": "dep", "B": "dep"}, "working_dir": "/srv"}, image="img:1")
    run = api.run(dep["id"], job_variables={"env": {"B": "run"}})
    dispatcher.run_once()
    [job] = fake_pusher.jobs
    assert job.flow_run_id == run["id"]
    assert job.env["A"] == "dep" and job.env["B"] == "run"
    assert job.env["PUSHPOOL_FLOW_RUN_ID"] == run["id"]
    assert job.env["PUSHPOOL_RUN_TOKEN"].startswith("ppr_")
    assert job.env["PUSHPOOL_API_URL"] == ctx.settings.api_url
    assert api.key not in job.env.values()
    assert job.configuration["working_dir"] == "/srv" and job.configuration["max_runtime_seconds"] == 86400
    recorded = api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))
    assert recorded["state"]["type"] == "PENDING"
    assert recorded["infra_id"] == f"fake-{run['id']}" and recorded["console_url"].startswith("https://")


def test_several_dispatchers_on_one_store_submit_each_run_once(api, ctx, fake_pusher):
    api.pool()
    dep = api.deployment()
    runs = [api.run(dep["id"]) for _ in range(60)]
    dispatchers = [Dispatcher(replace(ctx, store=SqliteStore(ctx.store.path))) for _ in range(4)]
    threads = [threading.Thread(target=lambda d=d: [d.run_once() for _ in range(5)]) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in dispatchers:
        d.close()
    assert set(fake_pusher.submits_per_run) == {r["id"] for r in runs}
    assert set(fake_pusher.submits_per_run.values()) == {1}


def test_pool_and_queue_limits_and_priorities(api, ctx, dispatcher, fake_pusher, clock):
    api.pool(concurrency_limit=2)
    api.ok("PATCH", api.ws("/work_pools/pool/queues/default"), json={"priority": 5})
    api.ok("POST", api.ws("/work_pools/pool/queues"), json={"name": "urgent", "priority": 1})
    dep_low = api.deployment("low")
    dep_high = api.deployment("high", work_queue_name="urgent")
    low = [api.run(dep_low["id"]), clock.advance(1) and api.run(dep_low["id"])]
    high = [api.run(dep_high["id"]) for _ in range(2)]
    dispatcher.run_once()
    assert {j.flow_run_id for j in fake_pusher.jobs} == {r["id"] for r in high}
    dispatcher.run_once()
    assert len(fake_pusher.jobs) == 2  # the pool is full
    fake_pusher.finish(high[0]["id"], exit_code=1)
    Reconciler(ctx).run_once()  # CRASHED: its slot is free at once
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs][2:] == [low[0]["id"]]


def test_deployment_limit_enqueue_and_cancel_new(api, dispatcher, fake_pusher, clock):
    api.pool()
    queued = api.deployment("queued", concurrency_limit=1)
    cancelling = api.deployment("cancelling", concurrency_limit=1, collision_strategy="CANCEL_NEW")
    q1, c1 = api.run(queued["id"]), api.run(cancelling["id"])
    clock.advance(1)
    q2, c2 = api.run(queued["id"]), api.run(cancelling["id"])
    dispatcher.run_once()
    assert {j.flow_run_id for j in fake_pusher.jobs} == {q1["id"], c1["id"]}
    assert state_of(api, q2["id"])["type"] == "SCHEDULED"
    cancelled = state_of(api, c2["id"])
    assert cancelled["type"] == "CANCELLED" and "CANCEL_NEW" in cancelled["message"]


def test_paused_pool_and_queue_dispatch_nothing(api, dispatcher, fake_pusher):
    api.pool(paused=True)
    run = api.run(api.deployment()["id"])
    dispatcher.run_once()
    assert fake_pusher.jobs == []
    api.ok("PATCH", api.ws("/work_pools/pool"), json={"paused": False})
    api.ok("PATCH", api.ws("/work_pools/pool/queues/default"), json={"paused": True})
    dispatcher.run_once()
    assert fake_pusher.jobs == []
    api.ok("PATCH", api.ws("/work_pools/pool/queues/default"), json={"paused": False})
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs] == [run["id"]]


def test_prefetch_submits_early(api, dispatcher, fake_pusher, clock):
    api.pool(prefetch_seconds=60)
    dep = api.deployment()
    soon = api.run(dep["id"], scheduled_time=(clock.now() + timedelta(seconds=45)).isoformat())
    later = api.run(dep["id"], scheduled_time=(clock.now() + timedelta(seconds=90)).isoformat())
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs] == [soon["id"]]
    assert state_of(api, later["id"])["type"] == "SCHEDULED"


def test_transient_errors_are_retried_with_backoff_then_succeed(api, dispatcher, fake_pusher, clock):
    api.pool()
    run = api.run(api.deployment()["id"])
    fake_pusher.errors = ["transient", "transient"]
    dispatcher.run_once()
    recorded = api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))
    assert recorded["state"]["type"] == "PENDING" and recorded["infra_id"] is None
    assert recorded["next_attempt_at"] is not None
    dispatcher.run_once()  # not yet time for the retry
    assert fake_pusher.errors == ["transient"]
    clock.advance(5)
    dispatcher.run_once()
    clock.advance(5)
    dispatcher.run_once()
    assert fake_pusher.submits_per_run[run["id"]] == 1
    recorded = api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))
    assert recorded["infra_id"] and recorded["submission_attempts"] == 3


def test_transient_errors_give_up_after_max_attempts(api, ctx, dispatcher, fake_pusher, clock):
    api.pool()
    run = api.run(api.deployment()["id"])
    fake_pusher.errors = ["transient"] * ctx.settings.submission_max_attempts
    for _ in range(ctx.settings.submission_max_attempts + 1):
        dispatcher.run_once()
        clock.advance(300)
    state = state_of(api, run["id"])
    assert state["type"] == "CRASHED" and "Gave up after 6 submission attempts" in state["message"]
    assert fake_pusher.jobs == []


def test_permanent_error_crashes_the_run_with_the_reason(api, dispatcher, fake_pusher):
    api.pool()
    run = api.run(api.deployment()["id"])
    fake_pusher.errors = ["permanent"]
    dispatcher.run_once()
    state = state_of(api, run["id"])
    assert state["type"] == "CRASHED" and "access denied (injected)" in state["message"]


def test_missing_block_reference_crashes_with_a_clear_message(api, dispatcher):
    template = {"job_configuration": {"creds": "{{ pushpool.blocks.nope }}"},
                "variables": {"type": "object", "properties": {}}}
    api.pool(base_job_template=template)
    run = api.run(api.deployment()["id"])
    dispatcher.run_once()
    state = state_of(api, run["id"])
    assert state["type"] == "CRASHED" and "block 'nope', which does not exist" in state["message"]


def test_block_data_reaches_the_pusher_decrypted(api, dispatcher, fake_pusher):
    api.ok("POST", api.ws("/blocks"), json={"name": "creds", "type": "secret", "data": {"value": "s3cr3t"}})
    template = {"job_configuration": {"creds": "{{ pushpool.blocks.creds }}"},
                "variables": {"type": "object", "properties": {}}}
    api.pool(base_job_template=template)
    api.run(api.deployment()["id"])
    dispatcher.run_once()
    assert fake_pusher.jobs[0].configuration["creds"] == {"value": "s3cr3t"}


def test_dispatcher_dying_between_claim_and_submit_is_recovered_once(api, ctx, fake_pusher, clock):
    api.pool()
    run = api.run(api.deployment()["id"])
    # A dispatcher claims, then dies before submitting: only the claim happened.
    claimed = ctx.store.claim_flow_runs(ctx.store.get_work_pool(ctx.store.get_workspace("default").id, "pool").id,
                                        clock.now(), clock.now() + timedelta(seconds=120), 10)
    assert [r.id for r in claimed.claimed] == [run["id"]]
    survivor = Dispatcher(ctx)
    survivor.run_once()
    assert fake_pusher.jobs == []  # the lease still holds
    clock.advance(121)
    survivor.run_once()
    survivor.run_once()
    survivor.close()
    assert fake_pusher.submits_per_run[run["id"]] == 1


def test_resubmission_after_a_crash_mid_submit_carries_the_same_run_token(api, ctx, fake_pusher, clock):
    api.pool()
    run = api.run(api.deployment()["id"])
    fake_pusher.submit = die_after_first_submit(fake_pusher.submit)
    dispatch_crash_then_restart(ctx, clock)
    tokens = {job.env["PUSHPOOL_RUN_TOKEN"] for job in fake_pusher.jobs}
    assert len(fake_pusher.jobs) == 2 and len(tokens) == 1
    container = api.as_key(tokens.pop())
    assert container.get(container.ws(f"/flow_runs/{run['id']}")).status_code == 200


def test_cancelled_while_submitting_stops_the_new_infrastructure(api, ctx, dispatcher, fake_pusher):
    api.pool()
    run = api.run(api.deployment()["id"])
    original_submit = fake_pusher.submit

    def submit_then_cancel(job):
        submission = original_submit(job)
        api.ok("POST", api.ws(f"/flow_runs/{run['id']}/cancel"))
        return submission

    fake_pusher.submit = submit_then_cancel
    dispatcher.run_once()
    assert state_of(api, run["id"])["type"] == "CANCELLED"
    assert fake_pusher.cancelled == [f"fake-{run['id']}"]


def test_late_marking_and_late_run_policies(api, ctx, clock):
    api.pool("all", late_run_policy={"mode": "run_all"})
    api.pool("latest", late_run_policy={"mode": "latest_only"})
    api.pool("skip", late_run_policy={"mode": "skip_late", "skip_after_seconds": 120})
    deps = {p: api.deployment(p, pool=p, schedules=[{"interval": 60}]) for p in ("all", "latest", "skip")}
    clock.advance(minutes=10)  # an outage: every pool has a backlog
    apply_late_policies(ctx)

    def states(pool: str) -> list[tuple[str, str]]:
        runs = api.ok("GET", api.ws("/flow_runs"), params={"deployment_id": deps[pool]["id"], "sort": "scheduled_asc",
                                                            "scheduled_before": clock.now().isoformat()})
        return [(r["state"]["type"], r["state"]["name"]) for r in runs]

    assert states("all") == [("SCHEDULED", "Late")] * 9 + [("SCHEDULED", "Scheduled")]
    latest = states("latest")
    assert latest[:-1] == [("CANCELLED", "Skipped")] * (len(latest) - 1) and latest[-1][0] == "SCHEDULED"
    # Runs every minute from 12:01 to 12:10, now 12:10: those more than 120 s late are skipped.
    skip = states("skip")
    assert skip == [("CANCELLED", "Skipped")] * 7 + [("SCHEDULED", "Late")] * 2 + [("SCHEDULED", "Scheduled")]


def test_the_late_pass_reads_only_what_became_overdue_and_everything_now_and_then(api, ctx, clock, dispatcher,
                                                                                 monkeypatch):
    """A paused pool's backlog is marked Late once; the passes after it read only the runs that became overdue
    since (not the whole backlog every second), and all of them every LATE_FULL_PASS_SECONDS."""
    from pushpool.control_plane.services import dispatcher as dispatching

    monkeypatch.setattr(dispatching, "LATE_FULL_PASS_SECONDS", 60)
    api.pool(paused=True)
    dep = api.deployment()
    backlog = [api.run(dep["id"]) for _ in range(40)]
    reads: list[int] = []
    overdue = ctx.store.list_overdue_scheduled_runs
    monkeypatch.setattr(ctx.store, "list_overdue_scheduled_runs",
                        lambda *a, **kw: reads.append(len(found := overdue(*a, **kw))) or found)
    clock.advance(ctx.settings.late_after_seconds + 1)
    dispatcher.run_once()
    assert reads == [40] and {state_of(api, r["id"])["name"] for r in backlog} == {"Late"}
    for _ in range(5):
        clock.advance(1)
        dispatcher.run_once()
    assert reads[1:] == [0] * 5  # nothing new became overdue: nothing read
    newcomer = api.run(dep["id"])
    clock.advance(ctx.settings.late_after_seconds + 1)
    dispatcher.run_once()
    assert reads[-1] == 1 and state_of(api, newcomer["id"])["name"] == "Late"
    clock.advance(60)
    dispatcher.run_once()
    assert reads[-1] == 41  # the periodic full pass (it changes nothing here)


def test_latest_only_skips_the_older_late_runs_when_a_newer_one_becomes_overdue(api, ctx, clock, dispatcher,
                                                                                monkeypatch):
    from pushpool.control_plane.services import dispatcher as dispatching

    monkeypatch.setattr(dispatching, "LATE_FULL_PASS_SECONDS", 3600)  # no full pass after the first
    api.pool(paused=True, late_run_policy={"mode": "latest_only"})
    api.deployment(schedules=[{"interval": 60}])
    clock.advance(minutes=3)
    dispatcher.run_once()  # a full pass: of the overdue runs only the newest is left
    for _ in range(90):  # in seconds: the 12:04 run becomes overdue (12:04:15) in an incremental pass
        clock.advance(1)
        dispatcher.run_once()
    overdue_before = clock.now() - timedelta(seconds=ctx.settings.late_after_seconds)
    runs = api.ok("GET", api.ws("/flow_runs"), params={"sort": "scheduled_asc",
                                                       "scheduled_before": overdue_before.isoformat()})
    waiting = [r for r in runs if r["state"]["type"] == "SCHEDULED"]
    assert len(waiting) == 1 and len(runs) >= 3, [(r["scheduled_time"], r["state"]) for r in runs]
    assert waiting[0]["id"] == runs[-1]["id"] and waiting[0]["state"]["name"] == "Late"
    assert all(r["state"]["name"] == "Skipped" for r in runs if r["state"]["type"] == "CANCELLED")


def test_a_paused_pool_retries_no_submission_either(api, ctx, dispatcher, fake_pusher):
    """A run PENDING without infrastructure (a submission to retry, or set PENDING through the API) waits while
    its pool is paused: pausing a pool stops every submission, not only new claims."""
    api.pool(paused=True)
    run = api.run(api.deployment()["id"])
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "PENDING"})
    dispatcher.run_once()
    assert fake_pusher.jobs == []
    api.ok("PATCH", api.ws("/work_pools/pool"), json={"paused": False})
    dispatcher.run_once()
    assert [j.flow_run_id for j in fake_pusher.jobs] == [run["id"]]
