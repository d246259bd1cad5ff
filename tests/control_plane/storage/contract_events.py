"""The Store contract for events, webhooks, automations and trigger buckets (every backend passes it)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.event_models import (
    Automation,
    Event,
    EventFilter,
    EventTrigger,
    RunDeployment,
    TriggerBucket,
    Webhook,
)
from pushpool.control_plane.models import Workspace
from tests.control_plane.storage.contract import T0, World


def event(world: World, name: str, resource: str, minutes: int = 0, **fields) -> Event:
    at = T0 + timedelta(minutes=minutes)
    return Event(workspace_id=world.ws.id, occurred=at, received=at, event=name,
                 resource={"pushpool.resource.id": resource}, **fields)


class EventsContract:
    def test_events_filtered_paged_and_kept_per_workspace(self, world):
        store = world.store
        other = store.create_workspace(Workspace(name="other", created=T0))
        events = [event(world, "pushpool.flow-run.Completed", f"pushpool.flow-run.{i}", minutes=i) for i in range(5)]
        events[1] = event(world, "pushpool.flow-run.Completed", "pushpool.flow-run.1", minutes=1, related=[
            {"pushpool.resource.id": "pushpool.deployment.d7", "pushpool.resource.role": "deployment"}])
        events.append(event(world, "pushpool.deployment.updated", "pushpool.deployment.d1", minutes=2))
        assert store.append_events(events) == 6
        store.append_events([Event(workspace_id=other.id, occurred=T0, received=T0, event="pushpool.flow-run.Failed",
                                   resource={"pushpool.resource.id": "pushpool.flow-run.x"})])
        store.append_events([events[0]])  # the same id again: kept once

        newest_first = store.list_events(world.ws.id, EventFilter(), limit=100)
        assert [e.id for e in newest_first][:2] == [events[4].id, events[3].id] and len(newest_first) == 6
        runs = store.list_events(world.ws.id, EventFilter(event_prefix="pushpool.flow-run.", ascending=True))
        assert [e.id for e in runs] == [e.id for e in events[:5]]
        assert [e.id for e in store.list_events(world.ws.id, EventFilter(resource_id="pushpool.deployment.*"))] == \
            [events[5].id]
        assert [e.id for e in store.list_events(world.ws.id, EventFilter(related_id="pushpool.deployment.d*",
                                                                         ascending=True))] == [events[1].id]
        assert store.list_events(world.ws.id, EventFilter(related_id="pushpool.tag.*")) == []
        window = store.list_events(world.ws.id, EventFilter(since=T0 + timedelta(minutes=1),
                                                            until=T0 + timedelta(minutes=3), ascending=True))
        assert [e.occurred for e in window] == [T0 + timedelta(minutes=m) for m in (1, 2, 2, 3)]

        page = store.list_events(world.ws.id, EventFilter(ascending=True), limit=2)
        seen = [e.id for e in page]
        while page:
            cursor = f"{page[-1].occurred.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}|{page[-1].id}"
            page = store.list_events(world.ws.id, EventFilter(ascending=True, after=cursor), limit=2)
            seen += [e.id for e in page]
        assert sorted(seen) == sorted(e.id for e in events) and len(seen) == 6
        back = store.list_events(world.ws.id, EventFilter(after=cursor), limit=100)
        assert len(back) == 5  # newest first, before the last one

        assert store.delete_events_before(T0 + timedelta(minutes=2)) >= 2
        left = store.list_events(world.ws.id, EventFilter(ascending=True))
        assert [e.occurred for e in left][0] == T0 + timedelta(minutes=2)

    def test_events_about_one_resource_by_exact_id(self, world):
        """An exact id (no ``*``) as the resource or a related resource: a run's page asks for its events so."""
        store = world.store
        other = store.create_workspace(Workspace(name="other", created=T0))
        about_run = [{"pushpool.resource.id": "pushpool.flow-run.r1", "pushpool.resource.role": "flow-run"}]
        own = event(world, "pushpool.flow-run.Running", "pushpool.flow-run.r1", minutes=0)
        infra = [event(world, "pushpool.infrastructure.started", f"pushpool.infrastructure.i{m}", minutes=m,
                       related=about_run) for m in (1, 2, 3)]
        unrelated = event(world, "pushpool.flow-run.Running", "pushpool.flow-run.r10", minutes=4, related=[
            {"pushpool.resource.id": "pushpool.flow-run.r10", "pushpool.resource.role": "flow-run"}])
        store.append_events([own, *infra, unrelated])
        store.append_events([Event(workspace_id=other.id, occurred=T0, received=T0, event="x.y",
                                   resource={"pushpool.resource.id": "pushpool.flow-run.r1"}, related=about_run)])

        mine = store.list_events(world.ws.id, EventFilter(resource_id="pushpool.flow-run.r1"))
        assert [e.id for e in mine] == [own.id]
        related = store.list_events(world.ws.id, EventFilter(related_id="pushpool.flow-run.r1"), limit=2)
        assert [e.id for e in related] == [infra[2].id, infra[1].id]  # newest first, r10 is another run
        cursor = f"{related[-1].occurred.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}|{related[-1].id}"
        rest = store.list_events(world.ws.id, EventFilter(related_id="pushpool.flow-run.r1", after=cursor))
        assert [e.id for e in rest] == [infra[0].id]
        ascending = store.list_events(world.ws.id, EventFilter(related_id="pushpool.flow-run.r1", ascending=True,
                                                               event_prefix="pushpool.infrastructure."))
        assert [e.id for e in ascending] == [e.id for e in infra]

        store.delete_events_before(T0 + timedelta(minutes=2))
        left = store.list_events(world.ws.id, EventFilter(related_id="pushpool.flow-run.r1", ascending=True))
        assert [e.id for e in left] == [infra[1].id, infra[2].id]

    def test_webhooks_by_name_slug_and_rotation(self, world):
        store = world.store
        hook = store.create_webhook(Webhook(workspace_id=world.ws.id, name="github", template="{}", slug="s1",
                                            created=T0, updated=T0))
        assert store.get_webhook(world.ws.id, "github") == hook
        assert store.get_webhook_by_slug("s1") == hook
        with pytest.raises(AlreadyExists):
            store.create_webhook(hook.model_copy(update={"id": "other", "slug": "s2"}))
        rotated = hook.model_copy(update={"slug": "s3", "enabled": False})
        store.update_webhook(rotated)
        assert store.get_webhook_by_slug("s1") is None and store.get_webhook_by_slug("s3") == rotated
        assert [w.name for w in store.list_webhooks(world.ws.id)] == ["github"]
        store.delete_webhook(world.ws.id, hook.id)
        assert store.get_webhook(world.ws.id, "github") is None and store.get_webhook_by_slug("s3") is None

    def test_automations_and_their_buckets(self, world):
        store = world.store
        automation = store.create_automation(Automation(
            workspace_id=world.ws.id, name="chain", trigger=EventTrigger(expect=["pushpool.flow-run.Completed"]),
            actions=[RunDeployment(deployment="flow/b")], created=T0, updated=T0))
        assert store.get_automation(world.ws.id, automation.id) == automation
        assert store.get_automation_by_name(world.ws.id, "chain") == automation
        assert store.get_automation("other-ws", automation.id) is None
        renamed = automation.model_copy(update={"name": "chain-2", "enabled": False})
        store.update_automation(renamed)
        assert store.get_automation_by_name(world.ws.id, "chain") is None
        assert store.get_automation(world.ws.id, automation.id) == renamed
        assert [a.name for a in store.list_automations(world.ws.id)] == ["chain-2"]

        bucket = TriggerBucket(automation_id=automation.id, key="k", workspace_id=world.ws.id, count=1,
                               deadline=T0 + timedelta(minutes=5))
        assert store.save_trigger_bucket(bucket, None) is True
        assert store.save_trigger_bucket(bucket, None) is False  # someone made it first
        stored = store.get_trigger_bucket(automation.id, "k")
        assert stored.version == 1 and stored.count == 1
        assert store.save_trigger_bucket(stored.model_copy(update={"count": 2}), 1) is True
        assert store.save_trigger_bucket(stored.model_copy(update={"count": 9}), 1) is False  # stale
        assert store.list_due_trigger_buckets(T0) == []
        due = store.list_due_trigger_buckets(T0 + timedelta(minutes=5))
        assert [(b.key, b.count) for b in due] == [("k", 2)]
        assert store.delete_trigger_bucket(automation.id, "k", 1) is False
        assert store.delete_trigger_bucket(automation.id, "k", 2) is True
        store.save_trigger_bucket(bucket, None)
        store.delete_automation(world.ws.id, automation.id)
        assert store.get_automation(world.ws.id, automation.id) is None
        assert store.get_trigger_bucket(automation.id, "k") is None
