"""Creating, cancelling and moving flow runs: the rules shared by the API and the services."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from typing import Any

from pushpool.control_plane.errors import Conflict, InvalidInput, NotFound
from pushpool.control_plane.models import Deployment, FlowRun, StateType, WorkPool, new_id
from pushpool.control_plane.services import states
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.json_schema import validation_errors
from pushpool.control_plane.services.templating import check_cloud_rules, merge_job_variables, validate_job_variables

#: Runs are scheduled at most this far from now (keeps every derived time in range).
MAX_SCHEDULE_DAYS = 10 * 365

_ADJECTIVES = ("amber", "brisk", "calm", "daring", "eager", "fuzzy", "gentle", "humble", "jolly", "keen",
               "lively", "mellow", "nimble", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty")
_ANIMALS = ("otter", "heron", "lynx", "marten", "gecko", "ibis", "koala", "lemur", "newt", "orca",
            "panda", "quail", "raven", "stoat", "tapir", "vole", "wombat", "yak", "zebu", "finch")


def generate_run_name(run_id: str) -> str:
    # A digest of the whole id: runs made in one millisecond have ids one apart, and still get unlike names.
    n = int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)
    return f"{_ADJECTIVES[n % len(_ADJECTIVES)]}-{_ANIMALS[(n // 20) % len(_ANIMALS)]}"


def validate_parameters(deployment: Deployment, parameters: dict[str, Any], *, require: bool = True) -> None:
    """Raise naming the parameter unless ``parameters`` fit the deployment's schema. ``require=False`` (the
    deployment's own defaults) lets required parameters be missing: each run must then supply them."""
    if deployment.parameter_schema is None:
        return
    errors = validation_errors(deployment.parameter_schema, parameters)
    if not require:
        errors = [e for e in errors if not (e.validator == "required" and not list(e.path))]
    if errors:
        first = errors[0]
        path = ".".join(["parameters", *(str(p) for p in first.path)])
        if first.validator == "required":
            path = "parameters"
        raise InvalidInput(f"{path}: {first.message}",
                           errors=[{"loc": ["parameters", *e.path], "msg": e.message} for e in errors])


def build_flow_run(
    ctx: ServiceContext,
    deployment: Deployment,
    pool: WorkPool,
    *,
    scheduled_time: datetime,
    parameters: dict[str, Any] | None = None,
    job_variables: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    auto_scheduled: bool = False,
    schedule_id: str | None = None,
    idempotency_key: str | None = None,
    parent: FlowRun | None = None,
) -> FlowRun:
    """A new SCHEDULED run of ``deployment``, validated (parameters, job variables) but not stored."""
    now = ctx.clock.now()
    if abs((scheduled_time - now).days) > MAX_SCHEDULE_DAYS:
        raise InvalidInput(f"scheduled_time: must be within {MAX_SCHEDULE_DAYS // 365} years of now")
    merged_params = {**deployment.parameters, **(parameters or {})}
    validate_parameters(deployment, merged_params)
    if job_variables:
        variables = pool.base_job_template.get("variables", {})
        validate_job_variables(variables, job_variables)
        validate_job_variables(variables, merge_job_variables(deployment.job_variables, job_variables))
        check_cloud_rules(pool.type, variables, deployment.job_variables, job_variables)
    run_id = new_id()
    return FlowRun(
        id=run_id, workspace_id=deployment.workspace_id, deployment_id=deployment.id, flow_name=deployment.flow_name,
        deployment_name=deployment.name, name=name or generate_run_name(run_id), pool_id=deployment.pool_id,
        queue_id=deployment.queue_id, parameters=merged_params, job_variables=job_variables or {},
        tags=sorted(set(deployment.tags) | set(tags or [])),
        state=states.make_state(StateType.SCHEDULED, now), scheduled_time=scheduled_time,
        auto_scheduled=auto_scheduled, schedule_id=schedule_id, idempotency_key=idempotency_key,
        parent_flow_run_id=parent.id if parent else None, depth=parent.depth + 1 if parent else 0,
        created=now, updated=now,
    )


def set_state(
    ctx: ServiceContext, run: FlowRun, target: StateType, message: str | None = None,
    name: str | None = None, **changes: Any,
) -> FlowRun:
    """Move ``run`` to ``target`` if the state machine allows it from its current state.

    The write is conditional on the run still being in a state from which the move is
    legal, so a concurrent change (the runner finishing while the reconciler decides it
    crashed) can never be overwritten. Raises Conflict when the move is not allowed.
    """
    retry = states.is_retry(run.state.type, target, name)
    if not retry:
        states.check_transition(run.state.type, target)
    state = states.make_state(target, ctx.clock.now(), message, name)
    expect = frozenset({StateType.RUNNING}) if retry else states.sources_for(target)
    updated = ctx.store.set_flow_run_state(run.id, state, expect=expect, changes=changes)
    if updated is None:
        current = ctx.store.get_flow_run(None, run.id)
        if current is None:
            raise NotFound("Flow run not found")
        raise Conflict(f"Cannot move a flow run from {current.state.type.value} to {target.value}")
    ctx.events.flow_run_state(updated, run.state.type)
    return updated


def try_set_state(ctx: ServiceContext, run: FlowRun, target: StateType, message: str | None = None,
                  name: str | None = None, **changes: Any) -> FlowRun | None:
    """Like :func:`set_state` but returns None instead of raising when the move is no longer legal."""
    try:
        return set_state(ctx, run, target, message, name, **changes)
    except (Conflict, NotFound):
        return None


def cancel(ctx: ServiceContext, run: FlowRun, message: str | None = None) -> FlowRun:
    """Cancel a run: at once when nothing is running yet, through CANCELLING otherwise (``message`` says why)."""
    current = run.state.type
    if current.is_final:
        raise Conflict(f"Flow run is already {current.value}")
    if current is StateType.CANCELLING:
        return run
    if current is StateType.SCHEDULED or (current is StateType.PENDING and run.infra_id is None):
        updated = try_set_state(ctx, run, StateType.CANCELLED, message or "Cancelled by request")
    else:
        updated = try_set_state(ctx, run, StateType.CANCELLING, message or "Cancellation requested")
        if updated is not None:
            ctx.request_tick("cancellation requested")  # the reconciler stops the infrastructure
    if updated is None:  # it moved meanwhile; try once more from where it is now
        fresh = ctx.store.get_flow_run(None, run.id)
        if fresh is None:
            raise NotFound("Flow run not found")
        if fresh.state.type == current:
            raise Conflict("Flow run changed while being cancelled; try again")
        return cancel(ctx, fresh, message)
    for child in ctx.store.list_child_runs(run.id):  # the runs its flow started go with it
        if not child.state.type.is_final:
            with contextlib.suppress(Conflict, NotFound):  # it finished or went meanwhile
                cancel(ctx, child)
    return updated


def retry(ctx: ServiceContext, run: FlowRun, deployment: Deployment, pool: WorkPool) -> FlowRun:
    """A new run, due now, with the parameters, job variables and tags of the final run ``run``; not stored."""
    if not run.state.type.is_final:
        raise Conflict(f"Flow run {run.name!r} is {run.state.type.value}: only a finished run can be retried")
    again = build_flow_run(ctx, deployment, pool, scheduled_time=ctx.clock.now(), parameters=run.parameters,
                           job_variables=run.job_variables, tags=run.tags)
    return again.model_copy(update={"retry_of": run.id})


def delete(ctx: ServiceContext, run: FlowRun) -> None:
    """Delete a run that will not start (SCHEDULED) or has finished and left no infrastructure behind."""
    current = run.state.type
    if not (current is StateType.SCHEDULED or current.is_final):
        raise Conflict(f"Flow run {run.name!r} is {current.value}: cancel it first (pushpool flow-run cancel)")
    awaits_cleanup = run.infra_id is not None and not run.cleaned_up
    # A run whose pool was deleted is cleaned up by nobody: nothing is gained by keeping it.
    if current.is_final and awaits_cleanup and ctx.store.get_work_pool_by_id(run.workspace_id, run.pool_id):
        raise Conflict(f"Flow run {run.name!r} still has infrastructure being cleaned up; try again in a minute")
    if not ctx.store.delete_flow_run(run.workspace_id, run.id, expect=current):
        raise Conflict(f"Flow run {run.name!r} changed while being deleted; try again")
