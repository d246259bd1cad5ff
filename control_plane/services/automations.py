"""Automation triggers: which events count, in which bucket, and when an automation fires.

* **Reactive**: events whose resource matches ``match`` (and some related resource
  ``match_related``) and whose name is in ``expect`` are counted per ``for_each`` bucket;
  at ``threshold`` within ``within`` seconds (0: no time limit) the automation fires and the
  bucket starts again. With ``after``, a bucket counts only once one of those events armed it.
* **Proactive**: an ``after`` event opens a bucket with a deadline ``within`` seconds later;
  ``expect`` events count in it, and reaching ``threshold`` closes it quietly. A bucket whose
  deadline passes first fires once — found by :func:`fire_overdue` in the tick (on Lambda
  within the minute tick). The bucket is deleted conditionally, so two ticks never fire twice.

Bucket writes are conditional on the version read, retried on conflict. Names and label values
use ``*`` wildcards. Events of automations themselves (``pushpool.automation.*``) are seen only
by triggers that name them, so an automation cannot feed itself through a wildcard.
"""

from __future__ import annotations

import fnmatch
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pushpool.control_plane.event_models import Automation, Event, EventTrigger, Labels, Posture, TriggerBucket

if TYPE_CHECKING:
    from pushpool.control_plane.services.context import ServiceContext

log = logging.getLogger("pushpool.automations")
RETRIES = 5
OWN_EVENTS = "pushpool.automation."


def labels_match(labels: dict[str, str], wanted: Labels) -> bool:
    for key, value in wanted.items():
        have = labels.get(key)
        if have is None:
            return False
        if not any(fnmatch.fnmatchcase(have, pattern) for pattern in (value if isinstance(value, list) else [value])):
            return False
    return True


def name_matches(name: str, patterns: list[str]) -> bool:
    if name.startswith(OWN_EVENTS):
        return any(p.startswith(OWN_EVENTS) and fnmatch.fnmatchcase(name, p) for p in patterns)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def resource_matches(trigger: EventTrigger, event: Event) -> bool:
    if trigger.match and not labels_match(event.resource, trigger.match):
        return False
    return not trigger.match_related or any(labels_match(r, trigger.match_related) for r in event.related)


def bucket_key(trigger: EventTrigger, event: Event) -> str:
    return "|".join(event.resource.get(label, "") for label in trigger.for_each) or "*"


class AutomationEngine:
    """Listens to each flushed batch of events; fires automations through ``fire``."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: list[Event]) -> None:
        by_workspace: dict[str, list[Event]] = {}
        for event in batch:
            by_workspace.setdefault(event.workspace_id, []).append(event)
        for workspace_id, events in by_workspace.items():
            automations = [a for a in self.ctx.store.list_automations(workspace_id) if a.enabled]
            if not automations:
                continue
            for event in sorted(events, key=lambda e: e.occurred):
                for automation in automations:
                    try:
                        self.consider(automation, event)
                    except Exception:
                        log.exception("automation %s failed on event %s", automation.name, event.id)

    def consider(self, automation: Automation, event: Event) -> None:
        trigger = automation.trigger
        if not resource_matches(trigger, event):
            return
        is_after = bool(trigger.after) and name_matches(event.event, trigger.after)
        if trigger.expect:
            is_expect = name_matches(event.event, trigger.expect)
        else:
            is_expect = not event.event.startswith(OWN_EVENTS) and not is_after
        if not (is_after or is_expect):
            return
        key = bucket_key(trigger, event)
        step = self._proactive if trigger.posture is Posture.PROACTIVE else self._reactive
        for _ in range(RETRIES):
            if step(automation, key, event, is_after, is_expect):
                return
        log.warning("automation %s: bucket %s kept changing; event %s not counted", automation.name, key, event.id)

    # Each step returns False when its conditional write lost a race (it is then tried again).
    def _reactive(self, automation: Automation, key: str, event: Event, is_after: bool, is_expect: bool) -> bool:
        store, trigger = self.ctx.store, automation.trigger
        bucket = store.get_trigger_bucket(automation.id, key)
        version = bucket.version if bucket else None
        if trigger.after and not (bucket and bucket.armed):
            if not is_after:
                return True  # not armed yet: nothing counts
            armed = TriggerBucket(automation_id=automation.id, key=key, workspace_id=automation.workspace_id,
                                  armed=True, opening_event=event.model_dump(mode="json"))
            return store.save_trigger_bucket(armed, version)
        if not is_expect:
            return True
        bucket = bucket or TriggerBucket(automation_id=automation.id, key=key, workspace_id=automation.workspace_id)
        if bucket.start and trigger.within and (event.occurred - bucket.start).total_seconds() > trigger.within:
            bucket = bucket.model_copy(update={"count": 0, "start": None})
        count = bucket.count + 1
        if count >= trigger.threshold:
            if version is not None and not store.delete_trigger_bucket(automation.id, key, version):
                return False
            self.fire(automation, event, count)
            return True
        return store.save_trigger_bucket(bucket.model_copy(update={"count": count, "start": bucket.start or
                                                                   event.occurred}), version)

    def _proactive(self, automation: Automation, key: str, event: Event, is_after: bool, is_expect: bool) -> bool:
        store, trigger = self.ctx.store, automation.trigger
        bucket = store.get_trigger_bucket(automation.id, key)
        if is_after and bucket is None:
            opened = TriggerBucket(automation_id=automation.id, key=key, workspace_id=automation.workspace_id,
                                   start=event.occurred, deadline=event.occurred + timedelta(seconds=trigger.within),
                                   opening_event=event.model_dump(mode="json"))
            return store.save_trigger_bucket(opened, None)
        if not is_expect or bucket is None:
            return True
        count = bucket.count + 1
        if count >= trigger.threshold:  # what was expected came in time: the window closes quietly
            return store.delete_trigger_bucket(automation.id, key, bucket.version)
        return store.save_trigger_bucket(bucket.model_copy(update={"count": count}), bucket.version)

    def fire_overdue(self) -> int:
        """Fire the Proactive automations whose window closed without what they expected."""
        fired = 0
        for bucket in self.ctx.store.list_due_trigger_buckets(self.ctx.clock.now()):
            automation = self.ctx.store.get_automation(bucket.workspace_id, bucket.automation_id)
            if not self.ctx.store.delete_trigger_bucket(bucket.automation_id, bucket.key, bucket.version):
                continue  # another tick took it, or an expected event just closed it
            if automation is None or not automation.enabled or automation.trigger.posture is not Posture.PROACTIVE:
                continue
            opening = Event.model_validate(bucket.opening_event) if bucket.opening_event else None
            if opening is not None:
                self.fire(automation, opening, bucket.count)
                fired += 1
        return fired

    def fire(self, automation: Automation, event: Event, count: int) -> None:
        from pushpool.control_plane.services.actions import run_actions

        run_actions(self.ctx, automation, event, count)


RETENTION_SWEEP_SECONDS = 600


def run_event_services(ctx: ServiceContext) -> int:
    """The tick's part: store pending events (automations see them), fire overdue Proactive triggers,
    and now and then delete events and run logs past their retention. Returns how many automations fired."""
    ctx.events.flush()
    fired = ctx.automations.fire_overdue() if ctx.automations is not None else 0
    now = ctx.clock.now()
    last = ctx.store.get_meta("events_swept")
    if last is None or (now - datetime.fromisoformat(last)).total_seconds() >= RETENTION_SWEEP_SECONDS:
        ctx.store.set_meta("events_swept", now.isoformat())
        deleted = ctx.store.delete_events_before(now - timedelta(days=ctx.settings.events_retention_days))
        if deleted:
            log.info("deleted %d events older than %s days", deleted, ctx.settings.events_retention_days)
        expired_logs = ctx.store.delete_expired_log_chunks(now)
        if expired_logs:
            log.info("deleted %d chunks of run logs past their retention", expired_logs)
    ctx.events.flush()
    return fired
