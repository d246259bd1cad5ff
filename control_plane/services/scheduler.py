"""The scheduler: turns schedules into SCHEDULED runs ahead of time, idempotently.

Each occurrence gets the idempotency key ``auto:<schedule id>:<UTC time>``, unique
per deployment in the store, so a repeated or concurrent tick inserts nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from control_plane.errors import PushpoolError
from control_plane.models import Deployment, FlowRun
from control_plane.services.context import ServiceContext
from control_plane.services.flow_runs import build_flow_run
from control_plane.services.schedules import occurrences


def idempotency_key(schedule_id: str, when_iso: str) -> str:
    return f"auto:{schedule_id}:{when_iso}"


def runs_due_for(ctx: ServiceContext, deployment: Deployment) -> list[FlowRun]:
    """The runs ``deployment``'s active schedules call for that are not materialised yet."""
    settings, now = ctx.settings, ctx.clock.now()
    if deployment.paused:
        return []
    pool = ctx.store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
    if pool is None:
        return []
    scheduled_count, latest = ctx.store.latest_auto_scheduled_time(deployment.id, now)
    if scheduled_count >= settings.scheduler_max_runs:
        return []
    after = max(now, latest) if latest else now
    horizon = now + timedelta(seconds=settings.scheduler_horizon_seconds)
    wanted = settings.scheduler_max_runs - scheduled_count
    candidates: list[tuple] = []
    for schedule in deployment.schedules:
        if not schedule.active:
            continue
        times = occurrences(schedule, after, horizon, wanted)
        if len(times) + scheduled_count < settings.scheduler_min_runs:
            # Too few within the horizon (e.g. a daily schedule): take the minimum anyway.
            times = occurrences(schedule, after, after + timedelta(days=3650), settings.scheduler_min_runs)
        candidates += [(when, schedule) for when in times]
    candidates.sort(key=lambda pair: pair[0])
    runs = []
    for when, schedule in candidates[:wanted]:
        runs.append(build_flow_run(
            ctx, deployment, pool, scheduled_time=when, parameters=schedule.parameters,
            auto_scheduled=True, schedule_id=schedule.id,
            idempotency_key=idempotency_key(schedule.id, when.isoformat()),
        ))
    return runs


def materialize_deployment(ctx: ServiceContext, deployment: Deployment) -> int:
    runs = runs_due_for(ctx, deployment)
    return ctx.store.create_flow_runs_if_absent(runs) if runs else 0


def replace_future_runs(ctx: ServiceContext, deployment: Deployment) -> int:
    """After a schedule change: drop future auto runs still waiting and materialise anew."""
    ctx.store.delete_scheduled_auto_runs(deployment.id, ctx.clock.now())
    return materialize_deployment(ctx, deployment)


def run_scheduler(ctx: ServiceContext) -> int:
    """One scheduler pass over every scheduled deployment of every workspace."""
    created = 0
    for deployment in ctx.store.list_scheduled_deployments():
        try:
            created += materialize_deployment(ctx, deployment)
        except PushpoolError:
            # A deployment whose parameters no longer validate is skipped, not fatal to the tick.
            continue
    return created
