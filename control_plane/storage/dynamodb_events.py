"""DynamoDB storage of events, webhooks, automations and trigger buckets (mixed into ``DynamoDbStore``).

=====================  ==========================  ==========================================
item                   PK / SK                     notes
=====================  ==========================  ==========================================
event                  EVENTS#ws / time#id         ``expires`` (epoch seconds) for DynamoDB TTL
webhook (by name)      WS#ws / HOOK#name
webhook (by id)        HOOK#id / HOOK
webhook (by slug)      HOOKSLUG#slug / HOOKSLUG    the slug is unique: written in the same transaction
automation (by name)   WS#ws / AUTO#name
automation (by id)     AUTO#id / AUTO
trigger bucket         BUCKET#automation / key     ``version`` for conditional writes;
                                                   lists: DUEBUCKETS → deadline#automation#key
=====================  ==========================  ==========================================

Event filters other than time (name prefix, resource pattern) are applied to the pages read.
"""

from __future__ import annotations

import contextlib
import fnmatch
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.event_models import RESOURCE_ID, Automation, Event, EventFilter, TriggerBucket, Webhook
from pushpool.control_plane.storage.dynamodb_packing import packed_item, read_doc
from pushpool.control_plane.storage.dynamodb_schema import (
    HIGH,
    INDEXES,
    LOWEST,
    delete_action,
    doc_item,
    put_action,
)
from pushpool.control_plane.storage.dynamodb_table import TransactionFailed
from pushpool.control_plane.storage.records import ts

if TYPE_CHECKING:
    from pushpool.control_plane.storage.dynamodb import DynamoDbStore

    _Base = DynamoDbStore
else:
    _Base = object

_NEW = "attribute_not_exists(PK)"
_EXISTS = "attribute_exists(PK)"
#: Events are kept at most this long by DynamoDB's TTL, whatever the retention setting says.
TTL_DAYS = 400


class DynamoEventsMixin(_Base):
    # ------------------------------------------------------------------ events
    def append_events(self, events: list[Event]) -> int:
        items = [packed_item(e, f"EVENTS#{e.workspace_id}", f"{ts(e.occurred)}#{e.id}", event=e.event,
                             resource_id=e.resource_id, expires=int(e.occurred.timestamp()) + TTL_DAYS * 86400)
                 for e in events]
        self.table.put_many(items)
        return len(items)

    def list_events(self, workspace_id: str, flt: EventFilter, limit: int = 100) -> list[Event]:
        low = ts(flt.since) if flt.since else LOWEST
        high = (ts(flt.until) + HIGH) if flt.until else HIGH
        if flt.after:
            occurred, _, last_id = flt.after.partition("|")
            cursor = f"{occurred}#{last_id}"
            low, high = (cursor + "\x00", high) if flt.ascending else (low, cursor)
        found: list[Event] = []
        for item in self.table.query(f"EVENTS#{workspace_id}", sk_between=(low, high), forward=flt.ascending,
                                     page_size=max(limit, 100)):
            if flt.after and item["SK"]["S"] == high and not flt.ascending:
                continue  # BETWEEN includes the cursor itself
            if flt.event_prefix and not item["event"]["S"].startswith(flt.event_prefix):
                continue
            if flt.resource_id and not fnmatch.fnmatchcase(item["resource_id"]["S"], flt.resource_id):
                continue
            event = read_doc(Event, item)
            if flt.related_id and not any(fnmatch.fnmatchcase(r[RESOURCE_ID], flt.related_id) for r in event.related):
                continue
            found.append(event)
            if len(found) >= limit:
                break
        return found

    def delete_events_before(self, before: datetime, limit: int = 5000) -> int:
        keys: list[tuple[str, str]] = []
        for workspace in self.list_workspaces():
            for item in self.table.query(f"EVENTS#{workspace.id}", sk_between=(LOWEST, ts(before))):
                keys.append((item["PK"]["S"], item["SK"]["S"]))
                if len(keys) >= limit:
                    break
        self.table.delete_many(keys)
        return len(keys)

    # ------------------------------------------------------------------ webhooks
    @staticmethod
    def _webhook_items(w: Webhook) -> tuple[dict, dict, dict]:
        return (doc_item(w, f"WS#{w.workspace_id}", f"HOOK#{w.name}"), doc_item(w, f"HOOK#{w.id}", "HOOK"),
                doc_item(w, f"HOOKSLUG#{w.slug}", "HOOKSLUG"))

    def create_webhook(self, webhook: Webhook) -> Webhook:
        try:
            self.table.transact([put_action(item, _NEW) for item in self._webhook_items(webhook)])
        except TransactionFailed as exc:
            raise AlreadyExists(f"Webhook {webhook.name!r} already exists") from exc
        return webhook

    def get_webhook(self, workspace_id: str, name: str) -> Webhook | None:
        return self._get(Webhook, f"WS#{workspace_id}", f"HOOK#{name}")

    def get_webhook_by_slug(self, slug: str) -> Webhook | None:
        return self._get(Webhook, f"HOOKSLUG#{slug}", "HOOKSLUG")

    def list_webhooks(self, workspace_id: str) -> list[Webhook]:
        return self._list(Webhook, f"WS#{workspace_id}", "HOOK#")

    def update_webhook(self, webhook: Webhook) -> None:
        old = self._get(Webhook, f"HOOK#{webhook.id}", "HOOK")
        if old is None or old.workspace_id != webhook.workspace_id:
            return
        by_name, by_id, by_slug = self._webhook_items(webhook)
        actions = [put_action(by_name, _EXISTS), put_action(by_id, _EXISTS)]
        if old.slug != webhook.slug:
            actions += [delete_action(f"HOOKSLUG#{old.slug}", "HOOKSLUG"), put_action(by_slug, _NEW)]
        else:
            actions.append(put_action(by_slug))
        with contextlib.suppress(TransactionFailed):  # deleted meanwhile
            self.table.transact(actions)

    def delete_webhook(self, workspace_id: str, webhook_id: str) -> None:
        webhook = self._get(Webhook, f"HOOK#{webhook_id}", "HOOK")
        if webhook and webhook.workspace_id == workspace_id:
            self.table.delete_many([(f"WS#{workspace_id}", f"HOOK#{webhook.name}"), (f"HOOK#{webhook_id}", "HOOK"),
                                    (f"HOOKSLUG#{webhook.slug}", "HOOKSLUG")])

    # ------------------------------------------------------------------ automations
    def create_automation(self, automation: Automation) -> Automation:
        a = automation
        try:
            self.table.transact([put_action(doc_item(a, f"WS#{a.workspace_id}", f"AUTO#{a.name}"), _NEW),
                                 put_action(doc_item(a, f"AUTO#{a.id}", "AUTO"), _NEW)])
        except TransactionFailed as exc:
            raise AlreadyExists(f"Automation {a.name!r} already exists") from exc
        return automation

    def get_automation(self, workspace_id: str, automation_id: str) -> Automation | None:
        found = self._get(Automation, f"AUTO#{automation_id}", "AUTO")
        return found if found and found.workspace_id == workspace_id else None

    def get_automation_by_name(self, workspace_id: str, name: str) -> Automation | None:
        return self._get(Automation, f"WS#{workspace_id}", f"AUTO#{name}")

    def list_automations(self, workspace_id: str) -> list[Automation]:
        return self._list(Automation, f"WS#{workspace_id}", "AUTO#")

    def update_automation(self, automation: Automation) -> None:
        a = automation
        old = self.get_automation(a.workspace_id, a.id)
        if old is None:
            return
        actions = [put_action(doc_item(a, f"AUTO#{a.id}", "AUTO"), _EXISTS)]
        if old.name != a.name:
            actions += [delete_action(f"WS#{a.workspace_id}", f"AUTO#{old.name}"),
                        put_action(doc_item(a, f"WS#{a.workspace_id}", f"AUTO#{a.name}"), _NEW)]
        else:
            actions.append(put_action(doc_item(a, f"WS#{a.workspace_id}", f"AUTO#{a.name}")))
        try:
            self.table.transact(actions)
        except TransactionFailed as exc:
            if old.name != a.name:
                raise AlreadyExists(f"Automation {a.name!r} already exists") from exc

    def delete_automation(self, workspace_id: str, automation_id: str) -> None:
        automation = self.get_automation(workspace_id, automation_id)
        if automation is None:
            return
        keys = [(f"WS#{workspace_id}", f"AUTO#{automation.name}"), (f"AUTO#{automation_id}", "AUTO")]
        keys += [(i["PK"]["S"], i["SK"]["S"]) for i in self.table.query(f"BUCKET#{automation_id}")]
        self.table.delete_many(keys)

    # ------------------------------------------------------------------ trigger buckets
    def get_trigger_bucket(self, automation_id: str, key: str) -> TriggerBucket | None:
        return self._get(TriggerBucket, f"BUCKET#{automation_id}", key)

    def save_trigger_bucket(self, bucket: TriggerBucket, expect_version: int | None) -> bool:
        stored = bucket.model_copy(update={"version": (expect_version or 0) + 1})
        extra: dict[str, Any] = {"version": stored.version}
        if bucket.deadline is not None:
            extra |= {"G5PK": "DUEBUCKETS", "G5SK": f"{ts(bucket.deadline)}#{bucket.automation_id}#{bucket.key}"}
        item = doc_item(stored, f"BUCKET#{bucket.automation_id}", bucket.key, **extra)
        if expect_version is None:
            return self.table.put(item, condition=_NEW)
        return self.table.put(item, condition="version = :v", values={":v": {"N": str(expect_version)}})

    def delete_trigger_bucket(self, automation_id: str, key: str, expect_version: int) -> bool:
        try:
            self.table.client.delete_item(
                TableName=self.table.name, Key={"PK": {"S": f"BUCKET#{automation_id}"}, "SK": {"S": key}},
                ConditionExpression="version = :v", ExpressionAttributeValues={":v": {"N": str(expect_version)}})
        except self.table.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def list_due_trigger_buckets(self, now: datetime, limit: int = 500) -> list[TriggerBucket]:
        pk_name, sk_name = INDEXES["lists"]
        out = []
        for item in self.table.query("DUEBUCKETS", index="lists", pk_name=pk_name, sk_name=sk_name,
                                     sk_between=(LOWEST, ts(now) + HIGH)):
            out.append(TriggerBucket.model_validate_json(item["doc"]["S"]))
            if len(out) >= limit:
                break
        return out
