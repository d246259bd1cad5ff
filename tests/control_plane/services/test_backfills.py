"""Backfills with the fake clock: occurrences become runs a few at a time, in order, never more than max_active
active; reprocess, pause, resume, cancel, dry run, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pushpool.control_plane.models import FlowRunFilter
from pushpool.control_plane.services.scheduler import run_scheduler

DAY = timedelta(days=1)


def midnight(clock) -> datetime:
    now = clock.now()
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def daily(api) -> dict:
    """A pool and a deployment running every day at 06:00 UTC (its own schedule makes runs ahead, not in the past)."""
    api.pool()
    return api.deployment(schedules=[{"cron": "0 6 * * *"}], parameters={"day": "unset"})


def backfill_runs(ctx, api, backfill_id: str) -> list:
    ws = ctx.store.get_workspace(api.workspace)
    return ctx.store.list_flow_runs(ws.id, FlowRunFilter(tags=[f"backfill:{backfill_id}"], sort="scheduled_asc"),
                                    limit=1000)


def finish(api, run_id: str, state: str = "COMPLETED") -> None:
    api.ok("POST", api.ws(f"/flow_runs/{run_id}/set_state"), json={"type": "RUNNING"})
    api.ok("POST", api.ws(f"/flow_runs/{run_id}/set_state"), json={"type": state})


def drive(ctx, api, dispatcher, backfill_id: str, fail_days: frozenset[int] = frozenset(),
          rounds: int = 60) -> tuple[list[list[datetime]], int]:
    """Dispatch, finish and schedule until the backfill ends: the occurrences whose runs each pass made (in
    order of the passes), and the most of its runs ever active at once."""
    seen: set[str] = set()
    batches: list[list[datetime]] = []
    most_active = 0
    for _ in range(rounds):
        runs = backfill_runs(ctx, api, backfill_id)
        new = sorted(r.scheduled_time for r in runs if r.id not in seen)
        if new:
            batches.append(new)
        seen |= {r.id for r in runs}
        active = [r for r in runs if not r.state.type.is_final]
        most_active = max(most_active, len(active))
        dispatcher.run_once()
        for run in active:
            finish(api, run.id, "FAILED" if run.scheduled_time.day in fail_days else "COMPLETED")
        run_scheduler(ctx)
        if api.ok("GET", api.ws(f"/backfills/{backfill_id}"))["state"] == "COMPLETED":
            break
    return batches, most_active


def in_order(batches: list[list[datetime]], backwards: bool = False) -> bool:
    """Each pass's runs come after (backwards: before) the previous pass's."""
    pairs = zip(batches, batches[1:], strict=False)
    return all((max(a) < min(b)) if not backwards else (min(a) > max(b)) for a, b in pairs)


def test_a_30_day_backfill_runs_each_day_in_order_never_more_than_max_active(api, ctx, clock, dispatcher):
    dep = daily(api)
    end = midnight(clock)
    body = {"start": (end - 30 * DAY).isoformat(), "end": end.isoformat(), "max_active": 3,
            "parameters": {"day": "backfilled"}}
    created = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json=body, status=201)
    assert (created["total"], created["progress"]["tag"]) == (30, f"backfill:{created['id']}")
    batches, most_active = drive(ctx, api, dispatcher, created["id"])
    expected = [end - 30 * DAY + timedelta(days=i, hours=6) for i in range(30)]
    assert [when for batch in batches for when in batch] == expected  # each day once, oldest first
    assert in_order(batches) and most_active == 3
    done = api.ok("GET", api.ws(f"/backfills/{created['id']}"))
    assert done["state"] == "COMPLETED" and done["ended"] is not None
    assert (done["created_runs"], done["skipped"], done["progress"]["finished"]) == (30, 0, {"COMPLETED": 30})
    runs = backfill_runs(ctx, api, created["id"])
    assert {r.parameters["day"] for r in runs} == {"backfilled"} and all(not r.auto_scheduled for r in runs)
    assert all(r.backfill_id == created["id"] and r.state.name != "Late" for r in runs)
    history = api.ok("GET", api.ws(f"/flow_runs/{runs[0].id}/states"))
    assert "Late" not in [s["name"] for s in history]  # a backfill's runs are meant to be in the past


def test_reprocess_failed_runs_only_the_failed_days_and_none_runs_nothing_again(api, ctx, clock, dispatcher):
    dep = daily(api)
    end = midnight(clock)
    body = {"start": (end - 10 * DAY).isoformat(), "end": end.isoformat(), "max_active": 5}
    first = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json=body)
    failed_days = frozenset({(end - 8 * DAY).day, (end - 3 * DAY).day})
    drive(ctx, api, dispatcher, first["id"], fail_days=failed_days)
    assert api.ok("GET", api.ws(f"/backfills/{first['id']}"))["progress"]["finished"] == {"COMPLETED": 8,
                                                                                          "FAILED": 2}
    plan = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json={**body, "reprocess": "failed",
                                                                                "dry_run": True}, status=200)
    assert (plan["to_create"], plan["to_skip"]) == (2, 8)
    assert {r["reason"] for r in plan["runs"] if not r["create"]} == {"it has a COMPLETED run"}
    assert len(backfill_runs(ctx, api, first["id"])) == 10  # the dry run created nothing
    again = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json={**body, "reprocess": "failed"})
    batches, _ = drive(ctx, api, dispatcher, again["id"])
    order = [when for batch in batches for when in batch]
    assert {when.day for when in order} == failed_days and len(order) == 2
    nothing = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json=body)
    run_scheduler(ctx)
    done = api.ok("GET", api.ws(f"/backfills/{nothing['id']}"))
    assert (done["state"], done["created_runs"], done["skipped"]) == ("COMPLETED", 0, 10)


def test_backwards_starts_with_the_latest_occurrence(api, ctx, clock, dispatcher):
    dep = daily(api)
    end = midnight(clock)
    created = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json={
        "start": (end - 7 * DAY).isoformat(), "end": end.isoformat(), "max_active": 2, "backwards": True})
    batches, _ = drive(ctx, api, dispatcher, created["id"])
    assert in_order(batches, backwards=True) and sum(map(len, batches)) == 7
    assert batches[0] == [end - 2 * DAY + timedelta(hours=6), end - DAY + timedelta(hours=6)]


def test_pause_resume_and_cancel(api, ctx, clock, dispatcher):
    dep = daily(api)
    end = midnight(clock)
    created = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json={
        "start": (end - 20 * DAY).isoformat(), "end": end.isoformat(), "max_active": 2})
    url = api.ws(f"/backfills/{created['id']}")
    first = backfill_runs(ctx, api, created["id"])
    assert len(first) == 2
    assert api.ok("POST", f"{url}/pause")["state"] == "PAUSED"
    dispatcher.run_once()
    for run in first:
        finish(api, run.id)
    run_scheduler(ctx)
    assert len(backfill_runs(ctx, api, created["id"])) == 2  # paused: nothing new
    assert api.ok("POST", f"{url}/resume")["state"] == "RUNNING"
    second = [r for r in backfill_runs(ctx, api, created["id"]) if not r.state.type.is_final]
    assert len(second) == 2
    dispatcher.run_once()  # one submitted, started; the other waits (not dispatched yet: cancelled at once)
    api.ok("POST", api.ws(f"/flow_runs/{second[0].id}/set_state"), json={"type": "RUNNING"})
    cancelled = api.ok("POST", f"{url}/cancel")
    assert cancelled["state"] == "CANCELLED"
    states = {r.id: r.state.type.value for r in backfill_runs(ctx, api, created["id"])}
    assert states[second[0].id] == "CANCELLING" and states[second[1].id] in ("CANCELLING", "CANCELLED")
    run_scheduler(ctx)
    assert len(backfill_runs(ctx, api, created["id"])) == 4  # cancelled: nothing new
    assert api.post(f"{url}/resume").status_code == 409
    listed = api.ok("GET", api.ws("/backfills"), params={"deployment_id": dep["id"]})
    assert [b["id"] for b in listed] == [created["id"]]


@pytest.mark.parametrize(("change", "field"), [
    ({"end": "future"}, "end: a backfill covers the past"),
    ({"start": "after-end"}, "end: must be after start"),
    ({"start": "years"}, "more than 10,000 occurrences"),
    ({"schedule_id": "nope"}, "schedule_id"),
    ({"parameters": {"day": 5}}, "day"),
    ({"max_active": 0}, "max_active"),
    ({"reprocess": "some"}, "reprocess"),
])
def test_bad_requests_name_the_field_and_create_nothing(api, ctx, clock, change, field):
    api.pool()
    dep = api.deployment(schedules=[{"cron": "*/5 * * * *"}],
                         parameter_schema={"type": "object", "properties": {"day": {"type": "string"}}})
    end = midnight(clock)
    body = {"start": (end - DAY).isoformat(), "end": end.isoformat(), **change}
    if change.get("end") == "future":
        body["end"] = (clock.now() + DAY).isoformat()
    if change.get("start") == "after-end":
        body["start"] = (end + timedelta(hours=1)).isoformat()
    if change.get("start") == "years":
        body["start"] = (end - 60 * DAY).isoformat()  # 17,280 occurrences
    response = api.post(api.ws(f"/deployments/{dep['id']}/backfills"), json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert api.ok("GET", api.ws("/backfills")) == []


def test_a_deployment_without_a_schedule_or_with_several_says_so(api, clock):
    api.pool()
    bare = api.deployment("bare")
    two = api.deployment("two", schedules=[{"cron": "0 1 * * *", "slug": "one"}, {"cron": "0 2 * * *", "slug": "b"}])
    end = midnight(clock)
    body = {"start": (end - DAY).isoformat(), "end": end.isoformat()}
    assert "has no schedule" in api.post(api.ws(f"/deployments/{bare['id']}/backfills"), json=body).text
    assert "name the one" in api.post(api.ws(f"/deployments/{two['id']}/backfills"), json=body).text
    by_slug = api.ok("POST", api.ws(f"/deployments/{two['id']}/backfills"), json={**body, "schedule_id": "b"})
    assert by_slug["schedule_id"] == two["schedules"][1]["id"] and by_slug["total"] == 1


def test_a_workspace_keeps_at_most_ten_open_backfills_and_a_pass_stops_at_its_budget(api, ctx, clock):
    from pushpool.control_plane.services import backfills

    dep = daily(api)
    end = midnight(clock)
    def body(i: int) -> dict:  # a range of its own: none of them finds its days taken by another
        return {"start": (end - (3 * i + 3) * DAY).isoformat(), "end": (end - 3 * i * DAY).isoformat(),
                "max_active": 1}

    made = [api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json=body(i))["id"] for i in range(10)]
    refused = api.post(api.ws(f"/deployments/{dep['id']}/backfills"), json=body(10))
    assert refused.status_code == 409 and "at most 10" in refused.text
    api.ok("POST", api.ws(f"/backfills/{made[0]}/cancel"))
    api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json=body(10))  # room again
    # a pass out of time stops and says where the next one starts
    assert backfills.advance_backfills(ctx, budget_seconds=-1) == 0
    assert ctx.backfill_resume_at == made[1]


def test_a_backfill_whose_schedule_is_removed_ends_saying_so(api, ctx, clock):
    dep = daily(api)
    end = midnight(clock)
    created = api.ok("POST", api.ws(f"/deployments/{dep['id']}/backfills"), json={
        "start": (end - 5 * DAY).isoformat(), "end": end.isoformat(), "max_active": 1})
    api.ok("PATCH", api.ws(f"/deployments/{dep['id']}"), json={"schedules": [{"cron": "0 7 * * *"}]})
    run_scheduler(ctx)
    ended = api.ok("GET", api.ws(f"/backfills/{created['id']}"))
    assert (ended["state"], ended["message"]) == ("CANCELLED", "Its schedule was deleted")
    assert len(backfill_runs(ctx, api, created["id"])) == 1  # the one it made before
