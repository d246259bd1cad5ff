"""What an automation does when it fires: run a deployment, notify, pause or resume, cancel.

Templates in actions (parameters, job variables, notification subject and body) are rendered in
the sandbox (:mod:`control_plane.services.sandbox`) with ``event`` (the triggering event) and,
when the event is about or related to them, ``flow_run``, ``deployment``, ``flow`` and
``work_pool`` — all as plain JSON values. A deployment, pool or run an action does not name is
inferred from the triggering event (its resource or a related resource of that kind).

Each firing emits ``pushpool.automation.triggered``; each action then
``pushpool.automation.action.executed`` or ``pushpool.automation.action.failed`` with the reason.
A notification is prepared (block, templates) at once and sent by the context's outbound queue
(:mod:`control_plane.services.outbound`); its executed or failed event follows when it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushpool.control_plane.errors import InvalidInput, NotFound, PushpoolError
from pushpool.control_plane.event_models import (
    RESOURCE_ID,
    Action,
    Automation,
    CancelFlowRun,
    ChangeDeployment,
    ChangeWorkPool,
    Event,
    RunDeployment,
    SendNotification,
)
from pushpool.control_plane.models import Deployment, FlowRun, WorkPool, with_changes
from pushpool.control_plane.services.events import resource
from pushpool.control_plane.services.outbound import post_json
from pushpool.control_plane.services.overrides import check_run_overrides
from pushpool.control_plane.services.sandbox import render, render_value

if TYPE_CHECKING:
    from pushpool.control_plane.services.context import ServiceContext

log = logging.getLogger("pushpool.automations")
NOTIFICATION_BLOCK_TYPES = ("slack-webhook", "webhook")


@dataclass
class Deferred:
    """An action whose work happens later, off the event flush: ``send()`` returns its detail or raises."""

    send: Callable[[], dict[str, Any]]


def _referenced_id(event: Event, kind: str) -> str | None:
    prefix = f"pushpool.{kind}."
    if event.resource_id.startswith(prefix):
        return event.resource_id[len(prefix):]
    for item in event.related:
        if item.get("pushpool.resource.role") == kind and item[RESOURCE_ID].startswith(prefix):
            return item[RESOURCE_ID][len(prefix):]
    return None


class Firing:
    """One automation firing on one event: the things it refers to, loaded once."""

    def __init__(self, ctx: ServiceContext, automation: Automation, event: Event) -> None:
        self.ctx, self.automation, self.event = ctx, automation, event
        self.workspace_id = automation.workspace_id
        run_id = _referenced_id(event, "flow-run")
        self.flow_run = ctx.store.get_flow_run(self.workspace_id, run_id) if run_id else None
        deployment_id = _referenced_id(event, "deployment") or (self.flow_run.deployment_id if self.flow_run else None)
        self.deployment = ctx.store.get_deployment(self.workspace_id, deployment_id) if deployment_id else None
        pool_id = _referenced_id(event, "work-pool") or (self.deployment.pool_id if self.deployment else None)
        self.work_pool = ctx.store.get_work_pool_by_id(self.workspace_id, pool_id) if pool_id else None

    def context(self) -> dict[str, Any]:
        def plain(record: Any, exclude: set[str] | None = None) -> Any:
            return record.model_dump(mode="json", exclude=exclude) if record is not None else None

        flow_name = (self.flow_run.flow_name if self.flow_run else
                     self.deployment.flow_name if self.deployment else _referenced_id(self.event, "flow"))
        return {"event": plain(self.event), "flow_run": plain(self.flow_run, {"job_variables"}),
                "deployment": plain(self.deployment), "flow": {"name": flow_name} if flow_name else None,
                "work_pool": plain(self.work_pool, {"base_job_template"}),
                "automation": {"id": self.automation.id, "name": self.automation.name}}

    def find_deployment(self, reference: str | None) -> Deployment:
        if reference is None:
            if self.deployment is None:
                raise InvalidInput("deployment: none named, and the triggering event has no related deployment")
            return self.deployment
        store = self.ctx.store
        flow_name, sep, name = reference.partition("/")
        found = (store.get_deployment_by_name(self.workspace_id, flow_name, name) if sep
                 else store.get_deployment(self.workspace_id, reference))
        if found is None:
            raise NotFound(f"deployment {reference!r} does not exist")
        return found

    def find_pool(self, name: str | None) -> WorkPool:
        if name is None:
            if self.work_pool is None:
                raise InvalidInput("work_pool: none named, and the triggering event has no related work pool")
            return self.work_pool
        found = self.ctx.store.get_work_pool(self.workspace_id, name)
        if found is None:
            raise NotFound(f"work pool {name!r} does not exist")
        return found


def run_actions(ctx: ServiceContext, automation: Automation, event: Event, count: int) -> None:
    firing = Firing(ctx, automation, event)
    me = resource("automation", automation.id, automation.name)
    cause = {RESOURCE_ID: event.resource_id, "pushpool.resource.role": "triggering-resource"}
    ctx.events.emit(automation.workspace_id, "pushpool.automation.triggered", me, [cause],
                    {"triggering_event": {"id": event.id, "event": event.event}, "count": count,
                     "posture": automation.trigger.posture.value})
    for index, action in enumerate(automation.actions):
        def report(work: Callable[[], Any], index: int = index, action: Action = action) -> None:
            try:
                detail = work()
            except (PushpoolError, ValueError) as exc:
                message = getattr(exc, "message", str(exc))
                log.info("automation %s: action %d (%s) failed: %s", automation.name, index, action.type, message)
                ctx.events.emit(automation.workspace_id, "pushpool.automation.action.failed", me, [cause],
                                {"action_index": index, "action_type": action.type, "reason": message})
                return
            except Exception as exc:  # noqa: BLE001 - a store error: reported, not raised
                log.exception("automation %s: action %d (%s) failed", automation.name, index, action.type)
                ctx.events.emit(automation.workspace_id, "pushpool.automation.action.failed", me, [cause],
                                {"action_index": index, "action_type": action.type,
                                 "reason": f"{type(exc).__name__}: {exc}"})
                return
            if isinstance(detail, Deferred):
                if not ctx.outbound.submit(automation.workspace_id, lambda: report(detail.send)):
                    report(_queue_full)
                return
            ctx.events.emit(automation.workspace_id, "pushpool.automation.action.executed", me, [cause],
                            {"action_index": index, "action_type": action.type, **detail})

        report(lambda action=action: execute(firing, action))


def _queue_full() -> dict[str, Any]:
    raise InvalidInput("too many notifications of this workspace are waiting to be sent; this one was dropped")


def execute(firing: Firing, action: Action) -> dict[str, Any] | Deferred:
    ctx = firing.ctx
    if isinstance(action, RunDeployment):
        return _run_deployment(firing, action)
    if isinstance(action, SendNotification):
        return _notify(firing, action)
    if isinstance(action, ChangeDeployment):
        from pushpool.control_plane.services.scheduler import replace_future_runs

        deployment = firing.find_deployment(action.deployment)
        paused = action.type == "pause-deployment"
        if deployment.paused != paused:
            changed = with_changes(deployment, {"paused": paused, "updated": ctx.clock.now()})
            ctx.store.update_deployment(changed)
            ctx.events.deployment(changed, "updated")
            replace_future_runs(ctx, changed)
        return {"deployment_id": deployment.id, "paused": paused}
    if isinstance(action, ChangeWorkPool):
        pool = firing.find_pool(action.work_pool)
        paused = action.type == "pause-work-pool"
        if pool.paused != paused:
            changed = with_changes(pool, {"paused": paused, "updated": ctx.clock.now()})
            ctx.store.update_work_pool(changed)
            ctx.events.work_pool(changed, "paused" if paused else "resumed")
        return {"work_pool": pool.name, "paused": paused}
    if isinstance(action, CancelFlowRun):
        from pushpool.control_plane.services.flow_runs import cancel

        run: FlowRun | None = (ctx.store.get_flow_run(firing.workspace_id, action.flow_run_id)
                               if action.flow_run_id else firing.flow_run)
        if run is None:
            raise NotFound("flow run: none named, and the triggering event is not about one")
        return {"flow_run_id": cancel(ctx, run).id}
    raise InvalidInput(f"unknown action {action!r}")


def _run_deployment(firing: Firing, action: RunDeployment) -> dict[str, Any]:
    from pushpool.control_plane.services.flow_runs import build_flow_run

    ctx = firing.ctx
    deployment = firing.find_deployment(action.deployment)
    pool = ctx.store.get_work_pool_by_id(deployment.workspace_id, deployment.pool_id)
    if pool is None:
        raise NotFound(f"the work pool of deployment {deployment.full_name!r} no longer exists")
    context = firing.context()
    parameters = render_value(action.parameters, context)
    job_variables = render_value(action.job_variables, context)
    # An automation's run counts as one started by a caller who cannot write the workspace: its
    # variables may come from an event anyone could send (a webhook).
    check_run_overrides(ctx.settings, pool, job_variables, may_write=False, actor=None)
    run = build_flow_run(ctx, deployment, pool, scheduled_time=ctx.clock.now(), parameters=parameters,
                         job_variables=job_variables or None, tags=["automation"])
    created = ctx.store.create_flow_run(run)
    ctx.events.flow_run_state(created, None)
    ctx.request_tick("automation ran a deployment")
    return {"flow_run_id": created.id, "deployment_id": deployment.id}


def _notify(firing: Firing, action: SendNotification) -> Deferred:
    ctx = firing.ctx
    block = ctx.store.get_block(firing.workspace_id, action.block)
    if block is None or block.type not in NOTIFICATION_BLOCK_TYPES:
        raise NotFound(f"block {action.block!r}: no {' or '.join(NOTIFICATION_BLOCK_TYPES)} block of that name")
    url = ctx.cipher.decrypt(block.ciphertext)["url"]
    context = firing.context()
    subject, body = render(action.subject, context), render(action.body, context)
    if block.type == "slack-webhook":
        message: dict[str, Any] = {"text": f"*{subject}*\n{body}"}
    else:
        message = {"subject": subject, "body": body, "event": context["event"]}
    settings = ctx.settings

    def send() -> dict[str, Any]:
        try:
            status = post_json(url, message, allow=settings.outbound_allow, timeout=settings.outbound_timeout_seconds)
        except InvalidInput as exc:
            raise InvalidInput(f"the notification URL of block {action.block!r}: {exc.message}") from None
        if status >= 300:
            raise InvalidInput(f"the notification URL of block {action.block!r} answered {status}")
        return {"block": action.block, "status": status}

    return Deferred(send)

