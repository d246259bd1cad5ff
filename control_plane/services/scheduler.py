"""The scheduler: turns schedules into SCHEDULED runs ahead of time, idempotently.

Each occurrence gets the idempotency key ``auto:<schedule id>:<UTC time>``, unique
per deployment in the store, so a repeated or concurrent tick inserts nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from pushpool.control_plane.errors import PushpoolError
from pushpool.control_plane.models import Deployment, FlowRun, LateRunMode, LateRunPolicy, Schedule, WorkPool
from pushpool.control_plane.services.backfills import advance_backfills
from pushpool.control_plane.services.budget import BudgetExceeded, within
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.flow_runs import build_flow_run
from pushpool.control_plane.services.schedules import latest_occurrences, occurrences

log = logging.getLogger("pushpool.scheduler")


def idempotency_key(schedule_id: str, when_iso: str) -> str:
    return f"auto:{schedule_id}:{when_iso}"


#: How far ahead a deployment's own request (create, update, resume) writes runs itself; the
#: scheduler's next pass fills the rest of the horizon. Longer than the Lambda tick period, so a
#: run due before the next tick always exists when that tick looks.
IMMEDIATE_SECONDS = 180
#: Runs the scheduler writes per transaction: large enough that runs of many deployments sharing
#: a scheduled time land on the same index pages, small enough to hold the write lock only briefly.
BATCH_RUNS = 5000


def runs_due_for(ctx: ServiceContext, deployment: Deployment, pool: WorkPool | None = None,
                 until: datetime | None = None, catch_up: bool = True) -> list[FlowRun]:
    """The runs ``deployment``'s active schedules call for up to ``until`` (default: the scheduler's
    horizon) that are not materialised yet; at least ``scheduler_min_runs`` when they are sparser.
    With a catch-up policy of its own (and ``catch_up``), also the occurrences since its latest run
    that were never written because the control plane was down (:func:`missed_occurrences`)."""
    settings, now = ctx.settings, ctx.clock.now()
    if deployment.paused:
        return []
    pool = pool or ctx.store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
    if pool is None:
        return []
    scheduled_count, latest = ctx.store.latest_auto_scheduled_time(deployment.id, now)
    if scheduled_count >= settings.scheduler_max_runs:
        return []
    after = max(now, latest) if latest else now
    horizon = until or now + timedelta(seconds=settings.scheduler_horizon_seconds)
    wanted = settings.scheduler_max_runs - scheduled_count
    candidates: list[tuple] = []
    with within(settings.schedule_budget_seconds, f"deployment {deployment.full_name}: schedules"):
        for schedule in deployment.schedules:
            if not schedule.active:
                continue
            times = occurrences(schedule, after, horizon, wanted)
            if len(times) + scheduled_count < settings.scheduler_min_runs:
                # Too few within the horizon (e.g. a daily schedule): take the minimum anyway.
                times = occurrences(schedule, after, after + timedelta(days=3650), settings.scheduler_min_runs)
            candidates += [(when, schedule) for when in times]
            if catch_up and latest is not None and latest < now and deployment.late_run_policy is not None:
                candidates += [(when, schedule) for when in missed_occurrences(
                    deployment.late_run_policy, schedule, latest, now, settings.scheduler_max_runs)]
    candidates.sort(key=lambda pair: pair[0])
    runs = []
    for when, schedule in candidates[:wanted]:
        runs.append(build_flow_run(
            ctx, deployment, pool, scheduled_time=when, parameters=schedule.parameters,
            auto_scheduled=True, schedule_id=schedule.id,
            idempotency_key=idempotency_key(schedule.id, when.isoformat()),
        ))
    return runs


def missed_occurrences(policy: LateRunPolicy, schedule: Schedule, latest: datetime, now: datetime,
                       at_most: int) -> list[datetime]:
    """Occurrences after ``latest`` (the deployment's last written run) and up to ``now`` that the scheduler never
    wrote (the control plane was down longer than its horizon), as far as the catch-up policy wants them: all of
    them (at most ``at_most``, the latest), the latest, or those within ``skip_after_seconds`` of now (0: none).
    The late pass then treats them like any late run under the same policy."""
    if policy.mode is LateRunMode.RUN_ALL:
        return latest_occurrences(schedule, latest, now, at_most)
    if policy.mode is LateRunMode.LATEST_ONLY:
        return latest_occurrences(schedule, latest, now, 1)
    window_start = max(latest, now - timedelta(seconds=policy.skip_after_seconds))
    return latest_occurrences(schedule, window_start, now, at_most) if window_start < now else []


def replace_future_runs(ctx: ServiceContext, deployment: Deployment, pool: WorkPool | None = None) -> int:
    """After a schedule change: drop future auto runs still waiting, write the next few minutes' runs
    at once (at least ``scheduler_min_runs``), and ask the scheduler to fill the rest of the horizon."""
    now = ctx.clock.now()
    ctx.store.delete_scheduled_auto_runs(deployment.id, now)
    pool = pool or ctx.store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
    prefetch = pool.prefetch_seconds if pool else 0
    # not the occurrences missed while it was paused: a pause is meant (its next runs close the gap)
    runs = runs_due_for(ctx, deployment, pool, until=now + timedelta(seconds=IMMEDIATE_SECONDS + prefetch),
                        catch_up=False)
    created = ctx.store.create_flow_runs_if_absent(runs) if runs else 0
    ctx.request_scheduling()
    return created


def run_scheduler(ctx: ServiceContext, stop: Callable[[], bool] | None = None) -> int:
    """One scheduler pass over every scheduled deployment of every workspace, written in batches, then over the
    running backfills (:mod:`control_plane.services.backfills`).

    Each deployment's occurrences are computed within ``schedule_budget_seconds`` (one that takes longer is
    skipped and logged), and the pass ends after ``scheduler_pass_budget_seconds`` or when ``stop()`` says
    so; deployments it did not reach are served by the next pass, which starts where this one stopped."""
    created = 0
    pending: list[FlowRun] = []
    pools: dict[str, WorkPool | None] = {}
    settings = ctx.settings
    pass_deadline = time.monotonic() + settings.scheduler_pass_budget_seconds
    deployments = _rotated(ctx, ctx.store.list_scheduled_deployments())
    for index, deployment in enumerate(deployments):
        if time.monotonic() > pass_deadline or (stop is not None and stop()):
            _remember_position(ctx, deployments[index:])
            log.warning("scheduler pass stopped after %d of %d deployments (budget %g s); the next pass goes on",
                        index, len(deployments), settings.scheduler_pass_budget_seconds)
            break
        if deployment.pool_id not in pools:
            pools[deployment.pool_id] = ctx.store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
        pool = pools[deployment.pool_id]
        if pool is None:
            continue
        try:
            pending += runs_due_for(ctx, deployment, pool)
        except BudgetExceeded:
            log.warning("deployment %s (workspace %s): its schedules took longer than %g s to evaluate; skipped",
                        deployment.id, deployment.workspace_id, settings.schedule_budget_seconds)
            continue
        except PushpoolError:
            # A deployment whose parameters no longer validate is skipped, not fatal to the tick.
            continue
        if len(pending) >= BATCH_RUNS:
            created += ctx.store.create_flow_runs_if_absent(pending)
            pending = []
    if pending:
        created += ctx.store.create_flow_runs_if_absent(pending)
    return created + advance_backfills(ctx)


def _rotated(ctx: ServiceContext, deployments: list[Deployment]) -> list[Deployment]:
    """``deployments`` starting from the first one the previous pass did not reach (if it stopped early)."""
    resume, ctx.scheduler_resume_at = ctx.scheduler_resume_at, None
    if resume is None:
        return deployments
    ids = [d.id for d in deployments]
    if resume not in ids:
        return deployments
    at = ids.index(resume)
    return deployments[at:] + deployments[:at]


def _remember_position(ctx: ServiceContext, remaining: list[Deployment]) -> None:
    ctx.scheduler_resume_at = remaining[0].id if remaining else None
