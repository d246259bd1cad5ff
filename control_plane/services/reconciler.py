"""The reconciler: watches submitted runs through their pushers and keeps the record true.

* infrastructure finished but the run is not final → CRASHED with the classified reason, or, within
  the pool's or deployment's ``crash_retries``, back to SCHEDULED (AwaitingRetry) to be submitted again;
* CANCELLING → stop the infrastructure → CANCELLED once it is gone;
* past the runtime deadline → stop the infrastructure → CRASHED;
* final runs → the pusher's cleanup, once, when the infrastructure is gone.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from pushpool.control_plane.errors import PushpoolError
from pushpool.control_plane.log_format import about
from pushpool.control_plane.metrics import crash_reason
from pushpool.control_plane.models import FlowRun, StateType, WorkPool
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.flow_runs import try_set_state
from pushpool.control_plane.services.pool_pushers import pusher_for
from pushpool.control_plane.services.states import make_state
from pushpool.pushers.base import InfraState, InfraStatus, Pusher

log = logging.getLogger("pushpool.reconciler")

_STOP_AFTER_FINAL = (StateType.CRASHED, StateType.CANCELLED)


def crash_message(status: InfraStatus) -> str:
    if status.state is InfraState.MISSING:
        return f"Infrastructure vanished: {status.reason or 'no longer found'}"
    if status.exit_code == 0:
        return "The run's container exited with code 0 without reporting a final state"
    return f"Infrastructure exited: {status.reason or f'exit code {status.exit_code}'}"


class Reconciler:
    def __init__(self, ctx: ServiceContext, batch_size: int = 500) -> None:
        self.ctx = ctx
        self.batch_size = batch_size

    def run_once(self) -> int:
        runs = self.ctx.store.list_runs_to_reconcile(self.batch_size)
        by_pool: dict[str, list[FlowRun]] = defaultdict(list)
        pools: dict[str, WorkPool | None] = {}
        for run in runs:
            if run.pool_id not in pools:
                pools[run.pool_id] = self.ctx.store.get_work_pool_by_id(run.workspace_id, run.pool_id)
            if pools[run.pool_id] is not None:
                by_pool[run.pool_id].append(run)
        for pool_id, group in by_pool.items():
            pool = pools[pool_id]
            assert pool is not None
            pusher = pusher_for(self.ctx, pool)
            try:
                statuses = pusher.status([r.infra_id for r in group if r.infra_id])
            except Exception as exc:  # noqa: BLE001 - one pool's cloud failing never stops the others' pass
                log.warning("status of %d runs of pool %s failed: %s", len(group), pool.name, exc,
                            exc_info=not isinstance(exc, PushpoolError))
                continue
            for run in group:
                status = statuses.get(run.infra_id or "")
                if status is not None:
                    try:
                        with about(workspace_id=run.workspace_id, flow_run_id=run.id, pool_id=run.pool_id):
                            self._reconcile(pusher, run, status, pool)
                    except Exception as exc:  # noqa: BLE001 - nor one run's
                        log.warning("reconciling flow run %s failed: %s", run.id, exc,
                                    exc_info=not isinstance(exc, PushpoolError))
        return len(runs)

    def _reconcile(self, pusher: Pusher, run: FlowRun, status: InfraStatus, pool: WorkPool) -> None:
        ctx, state = self.ctx, run.state.type
        infra_id = run.infra_id or ""
        if state.is_final:
            if status.finished:
                pusher.cleanup(infra_id)
                ctx.store.update_flow_run(run.id, {"cleaned_up": True})
            elif state in _STOP_AFTER_FINAL:
                pusher.cancel(infra_id)
            return
        if state is StateType.CANCELLING:
            if status.finished:
                try_set_state(ctx, run, StateType.CANCELLED, "Infrastructure stopped")
            else:
                pusher.cancel(infra_id)
            return
        if status.finished:
            reason = crash_message(status)
            ctx.metrics.crashed(pool.type, crash_reason(status.exit_code, status.reason,
                                                        missing=status.state is InfraState.MISSING))
            if self._retry_after_crash(pusher, run, pool, reason):
                return
            if try_set_state(ctx, run, StateType.CRASHED, reason) is not None:
                ctx.events.infrastructure(run, "crashed", reason=reason)
            return
        if run.deadline is not None and ctx.clock.now() > run.deadline:
            runtime = int((run.deadline - (run.submitted_at or run.deadline)).total_seconds())
            pusher.cancel(infra_id)
            ctx.metrics.crashed(pool.type, "max_runtime")
            try_set_state(ctx, run, StateType.CRASHED,
                          f"Exceeded the maximum runtime ({runtime}s); the infrastructure was stopped")

    def _retry_after_crash(self, pusher: Pusher, run: FlowRun, pool: WorkPool, reason: str) -> bool:
        """Within the pool's (or deployment's) ``crash_retries``: the run goes back to SCHEDULED
        (AwaitingRetry), due after a doubling delay, to be submitted afresh; its history keeps the attempt."""
        ctx = self.ctx
        deployment = ctx.store.get_deployment(run.workspace_id, run.deployment_id)
        allowed = deployment.crash_retries if deployment and deployment.crash_retries is not None else \
            pool.crash_retries
        if run.crash_attempts >= allowed:
            return False
        delay = pool.crash_retry_delay_seconds * 2 ** run.crash_attempts
        try:
            pusher.cleanup(run.infra_id or "")
        except PushpoolError as exc:  # what is left is the cloud's to expire; the retry goes ahead
            log.warning("cleaning up the crashed infrastructure of flow run %s failed: %s", run.id, exc)
        now = ctx.clock.now()
        attempt = run.crash_attempts + 1
        state = make_state(StateType.SCHEDULED, now, f"{reason}; submitting it again ({attempt} of {allowed}) "
                           f"in {delay}s", "AwaitingRetry")
        changes = {"crash_attempts": attempt, "scheduled_time": now + timedelta(seconds=delay), "infra_id": None,
                   "console_url": None, "logs_url": None, "submitted_at": None, "submission_attempts": 0,
                   "lease_until": None, "next_attempt_at": None, "submission_error": None, "deadline": None,
                   "start_time": None, "cleaned_up": False}
        updated = ctx.store.set_flow_run_state(run.id, state, expect={run.state.type}, changes=changes)
        if updated is None:
            return False  # it moved meanwhile (the runner reported): nothing to retry
        ctx.events.infrastructure(run, "crashed", reason=reason, retrying=True, attempt=attempt)
        ctx.events.flow_run_state(updated, run.state.type)
        ctx.request_tick("crashed run resubmitted")
        return True
