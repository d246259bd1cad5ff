"""The dispatcher: claims due runs and submits each exactly once to its pool's pusher.

Per tick: mark overdue runs Late and apply each pool's late-run policy; claim due
runs per pool in one atomic store step (which also takes the submission lease);
then render the job, mint the run token and call the pusher, in a bounded thread
pool. Runs whose submission failed transiently, or whose dispatcher died holding
the lease, are picked up again once their retry time or lease has passed; the
pusher's idempotency key (the flow run id) makes the repeat harmless.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shlex
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pushpool.control_plane.errors import Conflict, InvalidInput, NotFound, PushpoolError
from pushpool.control_plane.log_format import about
from pushpool.control_plane.models import (
    Deployment,
    FlowRun,
    FlowRunFilter,
    LateRunMode,
    LateRunPolicy,
    StateType,
    WorkPool,
)
from pushpool.control_plane.services import keys
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.flow_runs import cancel, try_set_state
from pushpool.control_plane.services.host_runs import blocks_allowed, is_host_pool
from pushpool.control_plane.services.pool_pushers import BlockResolver, block_resolver, pusher_for
from pushpool.control_plane.services.templating import render_job_configuration
from pushpool.pushers.base import (
    MAX_RUNTIME_SECONDS,
    Job,
    PermanentPusherError,
    Pusher,
    ThrottledPusherError,
    TransientPusherError,
)

log = logging.getLogger("pushpool.dispatcher")


# --------------------------------------------------------------------------- late runs


#: Overdue runs one Late pass reads at most.
LATE_PAGE = 1000
#: How often the Late pass reads every overdue run again; in between it reads only the runs that became overdue
#: since the previous pass (a backlog already Late is not read every second), so a late-run policy's skip of a
#: run that was already Late (``skip_after_seconds`` reached while its pool is paused) comes within this.
LATE_FULL_PASS_SECONDS = 15


@dataclass
class LateSweep:
    """Where a dispatcher's previous Late pass got to: runs scheduled before ``covered_until`` have been seen."""

    covered_until: datetime | None = None
    full_pass_at: datetime | None = None


def apply_late_policies(ctx: ServiceContext, sweep: LateSweep | None = None) -> None:
    """Mark SCHEDULED runs past their time Late, and skip backlog the late-run policy says to skip: the
    deployment's own (its catch-up), else its pool's. A backfill's runs are meant to be past: never Late.

    With ``sweep`` (a dispatcher's), a pass reads only what became overdue since the previous one, and everything
    every ``LATE_FULL_PASS_SECONDS``."""
    now = ctx.clock.now()
    before = now - timedelta(seconds=ctx.settings.late_after_seconds)
    full = sweep is None or sweep.full_pass_at is None or now >= sweep.full_pass_at  # both are set by a full pass
    since = None if full else sweep.covered_until
    overdue = ctx.store.list_overdue_scheduled_runs(before, LATE_PAGE, since=since)
    if sweep is not None:
        # a full page may have left some out: the next pass goes on from the last one read
        sweep.covered_until = overdue[-1].scheduled_time if len(overdue) >= LATE_PAGE else before
        if full:
            sweep.full_pass_at = now + timedelta(seconds=LATE_FULL_PASS_SECONDS)
    policies: dict[str, tuple[LateRunPolicy | None, str]] = {}
    pools: dict[str, WorkPool | None] = {}
    newest_due: dict[str, FlowRun | None] = {}
    for run in overdue:
        if run.backfill_id is not None:
            continue
        if run.deployment_id not in policies:
            policies[run.deployment_id] = _late_run_policy(ctx, run, pools)
        policy, whose = policies[run.deployment_id]
        lateness = (now - run.scheduled_time).total_seconds()
        if (run.auto_scheduled and policy and policy.mode is LateRunMode.SKIP_LATE
                and lateness > policy.skip_after_seconds):
            _skip(ctx, run, f"more than {policy.skip_after_seconds}s late ({whose} late-run policy skip_late)")
            continue
        if run.auto_scheduled and policy and policy.mode is LateRunMode.LATEST_ONLY:
            if run.deployment_id not in newest_due:
                newest_due[run.deployment_id] = _newest_due_auto_run(ctx, run, now)
            newest = newest_due[run.deployment_id]
            if newest is not None and newest.id != run.id:
                _skip(ctx, run, f"a newer run of this deployment is due ({whose} late-run policy latest_only)")
                continue
            if not full and newest is not None:  # the older ones, read in an earlier pass, are skipped now
                for older in _older_due_auto_runs(ctx, newest):
                    _skip(ctx, older, f"a newer run of this deployment is due ({whose} late-run policy latest_only)")
        if run.state.name != "Late":
            try_set_state(ctx, run, StateType.SCHEDULED, name="Late",
                          message=f"Not started {ctx.settings.late_after_seconds}s after its scheduled time")


def _late_run_policy(ctx: ServiceContext, run: FlowRun,
                     pools: dict[str, WorkPool | None]) -> tuple[LateRunPolicy | None, str]:
    """(the deployment's catch-up policy, "deployment"), else (its pool's, "pool"); ``pools``: read this pass."""
    deployment = ctx.store.get_deployment(run.workspace_id, run.deployment_id)
    if deployment is not None and deployment.late_run_policy is not None:
        return deployment.late_run_policy, "deployment"
    if run.pool_id not in pools:
        pools[run.pool_id] = ctx.store.get_work_pool_by_id(run.workspace_id, run.pool_id)
    pool = pools[run.pool_id]
    return (pool.late_run_policy if pool else None), "pool"


def _newest_due_auto_run(ctx: ServiceContext, run: FlowRun, now: datetime) -> FlowRun | None:
    found = ctx.store.list_flow_runs(
        run.workspace_id,
        FlowRunFilter(deployment_id=run.deployment_id, states=[StateType.SCHEDULED], scheduled_before=now,
                      auto_scheduled=True, sort="scheduled_desc"),
        limit=1,
    )
    return found[0] if found else None


def _older_due_auto_runs(ctx: ServiceContext, newest: FlowRun) -> list[FlowRun]:
    """The deployment's auto-scheduled runs still SCHEDULED from before ``newest`` (a latest_only policy's to skip)."""
    return [run for run in ctx.store.list_flow_runs(newest.workspace_id, FlowRunFilter(
        deployment_id=newest.deployment_id, states=[StateType.SCHEDULED], scheduled_before=newest.scheduled_time,
        auto_scheduled=True, sort="scheduled_desc"), limit=LATE_PAGE) if run.id != newest.id]


def displace_active_runs(ctx: ServiceContext, workspace_id: str, deployment_id: str) -> None:
    """``overlap: cancel_other``: a newer run of the deployment is due, so its active runs are cancelled (the newer
    one is claimed once their slot is free). Cancelling twice is harmless: any dispatcher may do it."""
    active = ctx.store.list_flow_runs(workspace_id, FlowRunFilter(
        deployment_id=deployment_id, states=[StateType.PENDING, StateType.RUNNING]), limit=100)
    for run in active:
        with contextlib.suppress(Conflict, NotFound):  # it ended meanwhile
            cancel(ctx, run, message="Cancelled: a newer run of this deployment is due (overlap cancel_other)")


def _skip(ctx: ServiceContext, run: FlowRun, why: str) -> None:
    try_set_state(ctx, run, StateType.CANCELLED, message=f"Skipped: {why}", name="Skipped")


# --------------------------------------------------------------------------- submission


def _backoff(ctx: ServiceContext, attempts: int) -> float:
    base = ctx.settings.submission_backoff_seconds * (2 ** max(0, attempts - 1))
    return min(ctx.settings.submission_backoff_max_seconds, base) * random.uniform(0.5, 1.0)


class TickCache:
    """What one dispatch pass reads once and shares between its runs: pools, deployments, bound pushers.

    A pass lasts a second or two; a change to a pool or deployment is seen by the next pass.
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._pools: dict[str, WorkPool | None] = {}
        self._deployments: dict[str, Deployment | None] = {}
        self._pushers: dict[str, Pusher] = {}
        self._lock = threading.Lock()

    def _get(self, table: dict, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in table:
                return table[key]
        value = load()  # outside the lock: two threads may both load once, harmlessly
        with self._lock:
            return table.setdefault(key, value)

    def pool(self, run: FlowRun) -> WorkPool | None:
        return self._get(self._pools, run.pool_id,
                         lambda: self.ctx.store.get_work_pool_by_id(run.workspace_id, run.pool_id))

    def deployment(self, run: FlowRun) -> Deployment | None:
        return self._get(self._deployments, run.deployment_id,
                         lambda: self.ctx.store.get_deployment(run.workspace_id, run.deployment_id))

    def pusher(self, pool: WorkPool) -> Pusher:
        return self._get(self._pushers, pool.id, lambda: pusher_for(self.ctx, pool))


def _no_blocks(name: str) -> dict[str, Any]:
    raise PermanentPusherError(f"local:push may not reference blocks (block {name!r}) unless "
                               "PUSHPOOL_HOST_PROCESSES=members")


def build_job(ctx: ServiceContext, run: FlowRun, pool: WorkPool, token: str,
              cache: TickCache | None = None, resolver: BlockResolver | None = None) -> tuple[Job, int]:
    """Render the run's job; returns it and the runtime limit in seconds. ``resolver`` (made here when not
    given) remembers the secrets the job holds, so messages about it can be redacted."""
    deployment = (cache or TickCache(ctx)).deployment(run)
    if deployment is None:
        raise PermanentPusherError("the run's deployment was deleted")
    if is_host_pool(pool.type) and ctx.settings.host_processes == "off":
        raise PermanentPusherError("local:push is disabled on this server (PUSHPOOL_HOST_PROCESSES=off): "
                                   "move the deployment to a cloud work pool")
    properties = pool.base_job_template.get("variables", {}).get("properties", {})
    image_layer = {"image": deployment.image} if deployment.image and "image" in properties else {}
    resolver = resolver or block_resolver(ctx, run.workspace_id)
    resolve = _no_blocks if is_host_pool(pool.type) and not blocks_allowed(ctx.settings) else resolver
    config = render_job_configuration(pool.base_job_template, image_layer, deployment.job_variables,
                                      run_layer=run.job_variables, resolve_block=resolve)
    command = config.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
    env.update({
        "PUSHPOOL_API_URL": ctx.settings.api_url,
        "PUSHPOOL_FLOW_RUN_ID": run.id,
        "PUSHPOOL_RUN_TOKEN": token,
    })
    labels = {str(k): str(v) for k, v in (config.get("labels") or {}).items()}
    labels.update({"pushpool.flow-run-id": run.id, "pushpool.deployment": deployment.full_name,
                   "pushpool.work-pool": pool.name})
    job = Job(
        flow_run_id=run.id, workspace_id=run.workspace_id, pool_name=pool.name,
        deployment_name=deployment.full_name, flow_run_name=run.name, configuration=config, env=env,
        image=config.get("image") or deployment.image, command=command or None, labels=labels,
        attempt=run.submission_attempts, crash_attempt=run.crash_attempts,
    )
    try:
        max_runtime = int(config.get("max_runtime_seconds") or ctx.settings.default_max_runtime_seconds)
    except (TypeError, ValueError):
        raise InvalidInput(f"max_runtime_seconds: {config.get('max_runtime_seconds')!r} is not a number") from None
    if not 1 <= max_runtime <= MAX_RUNTIME_SECONDS:
        raise InvalidInput(f"max_runtime_seconds: must be between 1 and {MAX_RUNTIME_SECONDS} (366 days)")
    return job, max_runtime


def submit_run(ctx: ServiceContext, run: FlowRun, cache: TickCache | None = None) -> FlowRun | None:
    """Submit one claimed run (this dispatcher holds its lease). Returns the run as recorded."""
    with about(workspace_id=run.workspace_id, flow_run_id=run.id, pool_id=run.pool_id):
        return _submit_run(ctx, run, cache or TickCache(ctx))


def _submit_run(ctx: ServiceContext, run: FlowRun, cache: TickCache) -> FlowRun | None:
    pool = cache.pool(run)
    if pool is None:
        return try_set_state(ctx, run, StateType.CRASHED, "The run's work pool was deleted")
    now = ctx.clock.now()
    token = keys.mint_run_token(run.id, ctx.cipher.derive_key("run-tokens"))
    resolver = block_resolver(ctx, run.workspace_id)
    # Whatever the cloud or the template says about this job is redacted before anyone can read it:
    # it becomes a state message, an event, the run's submission_error and a log line.
    redact = resolver.redact
    try:
        job, max_runtime = build_job(ctx, run, pool, token, cache, resolver)
        deadline = max(now, run.scheduled_time) + timedelta(seconds=max_runtime)
        ctx.store.set_run_token(run.id, keys.hash_secret(token),
                                deadline + timedelta(seconds=ctx.settings.run_token_grace_seconds))
        submission = cache.pusher(pool).submit(job)
    except TransientPusherError as exc:
        kind = "throttled" if isinstance(exc, ThrottledPusherError) else "transient"
        ctx.metrics.submission_failed(pool.type, kind)
        return _defer(ctx, run, redact(str(exc)))
    except (PermanentPusherError, InvalidInput, NotFound) as exc:
        ctx.metrics.submission_failed(pool.type, "permanent")
        return try_set_state(ctx, run, StateType.CRASHED, f"Submission to {pool.type} failed: {redact(str(exc))}")
    except Exception as exc:  # an unexpected error is retried a bounded number of times
        ctx.metrics.submission_failed(pool.type, "unexpected")
        message = redact(f"{type(exc).__name__}: {exc}")
        log.error("unexpected error submitting flow run %s: %s\n%s", run.id, message,
                  "".join(traceback.format_tb(exc.__traceback__)))  # frames, not values: no secret in the log
        return _defer(ctx, run, message)
    recorded = ctx.store.update_flow_run(
        run.id,
        {"infra_id": submission.infra_id, "console_url": submission.console_url, "logs_url": submission.logs_url,
         "submitted_at": now, "lease_until": None, "deadline": deadline, "submission_error": None},
        expect={"state_type": StateType.PENDING, "infra_id": None},
    )
    if recorded is not None:
        # a backfill's run is due from when the backfill made it, not from its (past) occurrence
        due = max(run.scheduled_time, run.created) if run.backfill_id else run.scheduled_time
        ctx.metrics.dispatched(pool.type, (now - due).total_seconds())
        ctx.events.infrastructure(recorded, "submitted", pusher=pool.type, infra_id=submission.infra_id,
                                  console_url=submission.console_url)
    if recorded is None:
        # Cancelled while we were submitting: stop what we started and let the reconciler clean up.
        ctx.store.update_flow_run(run.id, {"infra_id": submission.infra_id, "console_url": submission.console_url})
        try:
            cache.pusher(pool).cancel(submission.infra_id)
        except PushpoolError as exc:
            log.warning("could not stop infrastructure of cancelled run %s: %s", run.id, exc)
    return recorded


def _defer(ctx: ServiceContext, run: FlowRun, error: str) -> FlowRun | None:
    if run.submission_attempts >= ctx.settings.submission_max_attempts:
        return try_set_state(ctx, run, StateType.CRASHED,
                             f"Gave up after {run.submission_attempts} submission attempts: {error}")
    retry_at = ctx.clock.now() + timedelta(seconds=_backoff(ctx, run.submission_attempts))
    log.info("flow run %s: transient submission error, retrying at %s: %s", run.id, retry_at, error)
    return ctx.store.update_flow_run(
        run.id, {"lease_until": None, "next_attempt_at": retry_at, "submission_error": error[:1000]},
        expect={"state_type": StateType.PENDING, "infra_id": None},
    )


# --------------------------------------------------------------------------- the tick step


def next_claimable_time(ctx: ServiceContext, now: datetime, until: datetime) -> datetime | None:
    """The first moment in ``(now, until]`` at which a SCHEDULED run becomes claimable (its scheduled
    time less its pool's prefetch): when a ticker should wake to dispatch it on the dot."""
    wake_at = None
    for pool in ctx.store.list_all_work_pools():
        if pool.paused:
            continue
        lead = timedelta(seconds=pool.prefetch_seconds)
        due = ctx.store.earliest_scheduled_time(pool.id, now + lead, until + lead)
        if due is not None and (wake_at is None or due - lead < wake_at):
            wake_at = due - lead
    return wake_at


#: Claims of one pool in one pass, each of ``dispatch_batch_size`` runs.
MAX_CLAIMS_PER_POOL = 20


class Dispatcher:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._executor = ThreadPoolExecutor(max_workers=ctx.settings.pusher_threads,
                                            thread_name_prefix="pushpool-submit")
        self._late = LateSweep()

    def _lease_until(self) -> datetime:
        return self.ctx.clock.now() + timedelta(seconds=self.ctx.settings.submission_lease_seconds)

    def run_once(self) -> list[FlowRun]:
        """One dispatch pass; returns the runs handed to pushers.

        A pool with more due runs than one claim takes is claimed again at once (up to
        ``MAX_CLAIMS_PER_POOL`` batches), each batch handed to the submitting threads
        while the next is claimed, so a thousand runs due at the same second leave
        within the pass instead of a batch per tick.
        """
        ctx = self.ctx
        apply_late_policies(ctx, self._late)
        cache = TickCache(ctx)
        handed: list[FlowRun] = []
        pending: list[Future] = []
        batch_size = ctx.settings.dispatch_batch_size

        def hand_over(runs: list[FlowRun]) -> None:
            handed.extend(runs)
            pending.extend(self._executor.submit(submit_run, ctx, run, cache) for run in runs)

        pools = ctx.store.list_all_work_pools()
        for pool in pools:
            if pool.paused:
                continue
            for _ in range(MAX_CLAIMS_PER_POOL):
                claim = ctx.store.claim_flow_runs(pool.id, ctx.clock.now(), self._lease_until(), batch_size)
                for run in (*claim.claimed, *claim.cancelled):
                    ctx.events.flow_run_state(run, StateType.SCHEDULED)
                for deployment_id in claim.displacing:
                    displace_active_runs(ctx, pool.workspace_id, deployment_id)
                hand_over(claim.claimed)
                if len(claim.claimed) < batch_size:
                    break
        retries = []
        paused = {pool.id for pool in pools if pool.paused}
        for run in ctx.store.list_submittable_runs(ctx.clock.now(), batch_size):
            if run.pool_id in paused:  # a paused pool submits nothing, retries neither
                continue
            acquired = ctx.store.acquire_submission(run.id, ctx.clock.now(), self._lease_until())
            if acquired is not None:
                retries.append(acquired)
        hand_over(retries)
        for future in pending:
            future.result()
        if ctx.metrics.enabled:
            self._measure_due(ctx)
        return handed

    @staticmethod
    def _measure_due(ctx: ServiceContext) -> None:
        """The due runs left unclaimed after this pass, by pool type (a queue-depth gauge)."""
        due: dict[str, int] = {}
        now = ctx.clock.now()
        for pool in ctx.store.list_all_work_pools():
            due[pool.type] = due.get(pool.type, 0) + ctx.store.count_due_runs(pool.id, now)
        for pool_type, count in due.items():
            ctx.metrics.due_runs(pool_type, count)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
