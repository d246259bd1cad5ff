"""Backfills: a deployment's schedule over a past range, its occurrences turned into runs a few at a time.

``create`` checks the request and stores the record (never a run: a range may hold thousands of
occurrences); ``plan`` says what a backfill would do (``--dry-run``); ``advance_backfills``, part
of every scheduler pass, settles each running backfill's active runs and creates the next ones
while fewer than ``max_active`` are active, in order or backwards, skipping occurrences that
already have a run unless ``reprocess`` says otherwise. Each write of the record is conditional
on the version it read, and a backfill's run of an occurrence has the same id in every pass, so
any number of schedulers (threads, Lambda ticks) advance it without creating a run twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pushpool.control_plane.backfill_models import (
    DEFAULT_MAX_ACTIVE,
    MAX_BACKFILL_OCCURRENCES,
    Backfill,
    BackfillState,
    Reprocess,
    backfill_run_id,
    backfill_tag,
)
from pushpool.control_plane.errors import Conflict, InvalidInput, NotFound, PushpoolError
from pushpool.control_plane.models import Deployment, FlowRun, FlowRunFilter, Schedule, StateType
from pushpool.control_plane.services.budget import BudgetExceeded, within
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.flow_runs import MAX_SCHEDULE_DAYS, build_flow_run, cancel
from pushpool.control_plane.services.schedules import latest_occurrences, occurrences

log = logging.getLogger("pushpool.backfills")

_TICK = timedelta(microseconds=1)
#: Occurrences looked at per page when many are skipped (they already have runs).
PAGE = 200
#: Pages one backfill may look at in one pass (the rest waits for the next pass).
PAGES_PER_PASS = 5
#: Runs of a deployment read per page to find the occurrences that already have one.
EXISTING_RUNS_READ = 5000
#: Backfills running or paused in one workspace at once (each costs every scheduler pass a few reads).
MAX_OPEN_PER_WORKSPACE = 10
#: Running backfills one pass lists (of every workspace; the pass's time budget decides how many it advances).
MAX_RUNNING_LISTED = 2000
FAILED_TYPES = frozenset({StateType.FAILED, StateType.CRASHED})


@dataclass(frozen=True)
class BackfillRequest:
    start: datetime
    end: datetime
    schedule_id: str | None = None
    reprocess: Reprocess = Reprocess.NONE
    max_active: int = DEFAULT_MAX_ACTIVE
    backwards: bool = False
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    occurrence: datetime
    create: bool
    #: Why not, when it is left alone.
    reason: str | None = None


def schedule_of(deployment: Deployment, schedule_id: str | None) -> Schedule:
    """The schedule a backfill runs: the one named (by id or slug), else the deployment's only one."""
    if schedule_id is not None:
        for schedule in deployment.schedules:
            if schedule_id in (schedule.id, schedule.slug):
                return schedule
        raise InvalidInput(f"schedule_id: deployment {deployment.full_name} has no schedule {schedule_id!r}")
    if not deployment.schedules:
        raise InvalidInput(f"deployment {deployment.full_name} has no schedule to backfill; give it one first")
    if len(deployment.schedules) > 1:
        raise InvalidInput(f"schedule_id: deployment {deployment.full_name} has {len(deployment.schedules)} "
                           "schedules; name the one to backfill")
    return deployment.schedules[0]


def _range_occurrences(ctx: ServiceContext, schedule: Schedule, start: datetime, end: datetime,
                       limit: int) -> list[datetime]:
    try:
        with within(ctx.settings.schedule_budget_seconds * 4, "the backfill's range"):
            return occurrences(schedule, start - _TICK, end, limit)
    except BudgetExceeded:
        raise InvalidInput("start/end: the schedule's occurrences in this range take too long to compute; "
                           "split the range into several backfills") from None


def check_request(ctx: ServiceContext, deployment: Deployment, request: BackfillRequest) -> tuple[Schedule, int]:
    """The schedule and the number of its occurrences in the range, or :class:`InvalidInput` naming the field."""
    now = ctx.clock.now()
    if request.end <= request.start:
        raise InvalidInput("end: must be after start")
    if request.end > now:
        raise InvalidInput("end: a backfill covers the past (at most now); the schedule itself runs what is ahead")
    if (now - request.start).days > MAX_SCHEDULE_DAYS:
        raise InvalidInput(f"start: must be within {MAX_SCHEDULE_DAYS // 365} years of now")
    schedule = schedule_of(deployment, request.schedule_id)
    count = len(_range_occurrences(ctx, schedule, request.start, request.end, MAX_BACKFILL_OCCURRENCES + 1))
    if count > MAX_BACKFILL_OCCURRENCES:
        raise InvalidInput(f"start/end: the range holds more than {MAX_BACKFILL_OCCURRENCES:,} occurrences of the "
                           "schedule; split it into several backfills")
    if count == 0:
        raise InvalidInput("start/end: the schedule has no occurrence in this range")
    return schedule, count


def create(ctx: ServiceContext, deployment: Deployment, request: BackfillRequest,
           created_by: str | None = None) -> Backfill:
    open_ones = [b for b in ctx.store.list_backfills(deployment.workspace_id, limit=200) if not b.state.is_final]
    if len(open_ones) >= MAX_OPEN_PER_WORKSPACE:
        raise Conflict(f"the workspace has {len(open_ones)} backfills running or paused (at most "
                      f"{MAX_OPEN_PER_WORKSPACE}); wait for one to end or cancel one (pushpool backfill ls)")
    schedule, count = check_request(ctx, deployment, request)
    pool = ctx.store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
    if pool is None:
        raise NotFound("The deployment's work pool no longer exists")
    # the parameters must make a valid run (checked once here, not on every run the pass creates)
    build_flow_run(ctx, deployment, pool, scheduled_time=request.start,
                   parameters={**schedule.parameters, **(request.parameters or {})})
    now = ctx.clock.now()
    backfill = ctx.store.create_backfill(Backfill(
        workspace_id=deployment.workspace_id, deployment_id=deployment.id, deployment_name=deployment.full_name,
        schedule_id=schedule.id, start=request.start, end=request.end, reprocess=request.reprocess,
        max_active=request.max_active, backwards=request.backwards, parameters=request.parameters or {},
        total=count, created_by=created_by, created=now, updated=now))
    ctx.request_scheduling()
    return backfill


def plan(ctx: ServiceContext, deployment: Deployment, request: BackfillRequest) -> list[Decision]:
    """What a backfill of ``request`` would do with each occurrence, in the order it would (nothing is written)."""
    schedule, _ = check_request(ctx, deployment, request)
    times = _range_occurrences(ctx, schedule, request.start, request.end, MAX_BACKFILL_OCCURRENCES)
    if request.backwards:
        times.reverse()
    decisions: list[Decision] = []
    for page_start in range(0, len(times), PAGE):
        page = times[page_start:page_start + PAGE]
        existing = _existing_runs(ctx, deployment, page, backfill_id=None)
        decisions += [_decide(request.reprocess, when, existing.get(when, [])) for when in page]
    return decisions


def _existing_runs(ctx: ServiceContext, deployment: Deployment, times: list[datetime],
                   backfill_id: str | None) -> dict[datetime, list[FlowRun]]:
    """The deployment's runs at each of ``times`` (exactly), except the backfill's own."""
    if not times:
        return {}
    wanted = set(times)
    runs = ctx.store.list_flow_runs(deployment.workspace_id, FlowRunFilter(
        deployment_id=deployment.id, scheduled_after=min(times), scheduled_before=max(times), sort="scheduled_asc"),
        limit=EXISTING_RUNS_READ)
    found: dict[datetime, list[FlowRun]] = {}
    for run in runs:
        if run.scheduled_time in wanted and (backfill_id is None or run.backfill_id != backfill_id):
            found.setdefault(run.scheduled_time, []).append(run)
    return found


def _decide(reprocess: Reprocess, when: datetime, existing: list[FlowRun]) -> Decision:
    active = [r for r in existing if not r.state.type.is_final]
    if active:
        return Decision(when, False, f"a run of it is {active[0].state.type.value}")
    if not existing or reprocess is Reprocess.ALL:
        return Decision(when, True)
    latest = max(existing, key=lambda r: (r.created, r.id))
    if reprocess is Reprocess.FAILED and latest.state.type in FAILED_TYPES:
        return Decision(when, True)
    return Decision(when, False, f"it has a {latest.state.type.value} run")


# --------------------------------------------------------------------------- the scheduler pass


def advance_backfills(ctx: ServiceContext, budget_seconds: float | None = None) -> int:
    """Advance every running backfill once, within ``budget_seconds`` (default: the scheduler pass's budget);
    the number of runs created. Backfills the pass did not reach come first in the next pass."""
    created = 0
    running = ctx.store.list_running_backfills(MAX_RUNNING_LISTED)
    resume, ctx.backfill_resume_at = ctx.backfill_resume_at, None
    ids = [b.id for b in running]
    if resume in ids:
        at = ids.index(resume)
        running = running[at:] + running[:at]
    deadline = time.monotonic() + (ctx.settings.scheduler_pass_budget_seconds if budget_seconds is None
                                   else budget_seconds)
    for index, backfill in enumerate(running):
        if time.monotonic() > deadline:
            ctx.backfill_resume_at = backfill.id
            log.warning("backfills: the pass stopped after %d of %d; the next pass goes on", index, len(running))
            break
        try:
            created += advance(ctx, backfill)
        except BudgetExceeded:
            log.warning("backfill %s: its schedule took too long to evaluate; trying again next pass", backfill.id)
        except PushpoolError as exc:
            log.warning("backfill %s could not advance: %s", backfill.id, exc)
    return created


def advance(ctx: ServiceContext, backfill: Backfill) -> int:
    """Settle the backfill's active runs, create the next ones while fewer than ``max_active`` are active, and save
    its progress (conditionally: a pass that raced another creates nothing the other did not)."""
    store, now = ctx.store, ctx.clock.now()
    deployment = store.get_deployment(backfill.workspace_id, backfill.deployment_id)
    pool = deployment and store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
    schedule = next((s for s in deployment.schedules if s.id == backfill.schedule_id), None) if deployment else None
    if deployment is None or pool is None or schedule is None:
        gone = "deployment" if deployment is None else ("work pool" if pool is None else "schedule")
        store.save_backfill(backfill.model_copy(update={
            "state": BackfillState.CANCELLED, "ended": now, "updated": now,
            "message": f"Its {gone} was deleted"}))
        return 0
    active, finished = _settled(ctx, backfill)
    updates: dict[str, Any] = {"active_run_ids": active, "finished": finished, "updated": now}
    new_runs: list[FlowRun] = []
    if not backfill.exhausted and len(active) < backfill.max_active:
        decided, cursor, exhausted = _next_decisions(ctx, backfill, deployment, schedule,
                                                     backfill.max_active - len(active))
        for decision in decided:
            if decision.create:
                run = build_flow_run(ctx, deployment, pool, scheduled_time=decision.occurrence,
                                     parameters={**schedule.parameters, **backfill.parameters},
                                     tags=[backfill.tag], schedule_id=schedule.id,
                                     idempotency_key=f"backfill:{backfill.id}:{decision.occurrence.isoformat()}")
                new_runs.append(run.model_copy(update={"id": backfill_run_id(backfill.id, decision.occurrence),
                                                       "backfill_id": backfill.id}))
        updates.update(cursor=cursor, exhausted=exhausted, created_runs=backfill.created_runs + len(new_runs),
                       skipped=backfill.skipped + sum(1 for d in decided if not d.create))
        updates["active_run_ids"] = active + [run.id for run in new_runs]
    if updates.get("exhausted", backfill.exhausted) and not updates["active_run_ids"]:
        updates.update(state=BackfillState.COMPLETED, ended=now)
    if all(getattr(backfill, field) == value for field, value in updates.items() if field != "updated"):
        return 0  # all its active runs still run (the usual pass): nothing to write
    if new_runs:
        store.create_flow_runs_if_absent(new_runs)
    saved = store.save_backfill(backfill.model_copy(update=updates))
    if saved is None:  # another pass advanced it meanwhile; the runs it created have the same ids as ours
        return 0
    return len(new_runs)


def _settled(ctx: ServiceContext, backfill: Backfill) -> tuple[list[str], dict[str, int]]:
    """(its runs still active, its ended runs counted by final state type)."""
    active, finished = [], dict(backfill.finished)
    for run_id in backfill.active_run_ids:
        run = ctx.store.get_flow_run(backfill.workspace_id, run_id)
        if run is None:  # deleted with its deployment
            continue
        if run.state.type.is_final:
            finished[run.state.type.value] = finished.get(run.state.type.value, 0) + 1
        else:
            active.append(run_id)
    return active, finished


def _next_decisions(ctx: ServiceContext, backfill: Backfill, deployment: Deployment, schedule: Schedule,
                    room: int) -> tuple[list[Decision], datetime | None, bool]:
    """The next occurrences looked at (up to ``room`` to create, a few pages at most), the cursor after them, and
    whether the range is done."""
    decided: list[Decision] = []
    cursor, wanted = backfill.cursor, room
    for _ in range(PAGES_PER_PASS):
        times = _page(ctx, backfill, schedule, cursor, PAGE)
        if not times:
            return decided, cursor, True
        existing = _existing_runs(ctx, deployment, times, backfill.id)
        for when in times:
            decision = _decide(backfill.reprocess, when, existing.get(when, []))
            decided.append(decision)
            cursor = when
            if decision.create:
                wanted -= 1
                if wanted == 0:
                    return decided, cursor, not _page(ctx, backfill, schedule, cursor, 1)
    return decided, cursor, False


def _page(ctx: ServiceContext, backfill: Backfill, schedule: Schedule, cursor: datetime | None,
          count: int) -> list[datetime]:
    """The next ``count`` occurrences after ``cursor`` (backwards: before it, latest first)."""
    if not backfill.backwards:
        after = cursor if cursor is not None else backfill.start - _TICK
        with within(ctx.settings.schedule_budget_seconds, f"backfill {backfill.id}"):
            return occurrences(schedule, after, backfill.end, count)
    before = cursor - _TICK if cursor is not None else backfill.end
    if before < backfill.start:
        return []
    # the window first looked in is what ``count`` occurrences take on average, twice over
    span = (backfill.end - backfill.start) / max(1, backfill.total) * count * 2
    with within(ctx.settings.schedule_budget_seconds, f"backfill {backfill.id}"):
        return latest_occurrences(schedule, backfill.start - _TICK, before, count, span)


# --------------------------------------------------------------------------- pause, resume, cancel


def set_paused(ctx: ServiceContext, backfill: Backfill, paused: bool) -> Backfill:
    wanted = BackfillState.PAUSED if paused else BackfillState.RUNNING
    if backfill.state is wanted:
        return backfill
    if backfill.state.is_final:
        raise Conflict(f"Backfill is already {backfill.state.value}")
    saved = ctx.store.save_backfill(backfill.model_copy(update={"state": wanted, "updated": ctx.clock.now()}))
    if saved is None:
        raise Conflict("Backfill changed meanwhile; try again")
    if not paused:
        ctx.request_scheduling()
    return saved


def cancel_backfill(ctx: ServiceContext, backfill: Backfill) -> Backfill:
    """No more runs; its runs not final yet are cancelled (those running, through CANCELLING)."""
    if backfill.state.is_final:
        raise Conflict(f"Backfill is already {backfill.state.value}")
    now = ctx.clock.now()
    saved = ctx.store.save_backfill(backfill.model_copy(update={
        "state": BackfillState.CANCELLED, "ended": now, "updated": now, "message": "Cancelled by request"}))
    if saved is None:
        raise Conflict("Backfill changed meanwhile; try again")
    for run_id in saved.active_run_ids:
        run = ctx.store.get_flow_run(saved.workspace_id, run_id)
        if run is not None and not run.state.type.is_final:
            try:
                cancel(ctx, run, message=f"Cancelled with backfill {saved.id}")
            except (Conflict, NotFound):  # it ended meanwhile
                continue
    return saved


def progress(backfill: Backfill) -> dict[str, Any]:
    """Figures for people: occurrences looked at, runs made, ended, active."""
    ended = sum(backfill.finished.values())
    return {"total": backfill.total, "created_runs": backfill.created_runs, "skipped": backfill.skipped,
            "active": len(backfill.active_run_ids), "ended": ended, "finished": backfill.finished,
            "tag": backfill_tag(backfill.id)}
