"""SQLite storage of events, webhooks, automations and trigger buckets (mixed into ``SqliteStore``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.event_models import RESOURCE_ID, Automation, Event, EventFilter, TriggerBucket, Webhook
from pushpool.control_plane.storage.records import ts

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    workspace_id TEXT NOT NULL, occurred TEXT NOT NULL, id TEXT NOT NULL, event TEXT NOT NULL,
    resource_id TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (workspace_id, occurred, id));
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (workspace_id, id);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred);
CREATE INDEX IF NOT EXISTS events_by_resource ON events (workspace_id, resource_id, occurred, id);
-- Each event's related resources, one row each: "the events about this run" is an index range, not a scan.
CREATE TABLE IF NOT EXISTS event_related (
    workspace_id TEXT NOT NULL, resource_id TEXT NOT NULL, occurred TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (workspace_id, resource_id, occurred, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_related_by_time ON event_related (occurred);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL, UNIQUE (workspace_id, name));
CREATE TABLE IF NOT EXISTS automations (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, owner_deployment_id TEXT,
    doc TEXT NOT NULL, UNIQUE (workspace_id, name));
CREATE TABLE IF NOT EXISTS trigger_buckets (
    automation_id TEXT NOT NULL, key TEXT NOT NULL, deadline TEXT, version INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (automation_id, key));
CREATE INDEX IF NOT EXISTS buckets_by_deadline ON trigger_buckets (deadline) WHERE deadline IS NOT NULL;
"""
#: Fills ``event_related`` from events written before it existed (run once per database).
EVENT_RELATED_BACKFILL = f"""
INSERT OR IGNORE INTO event_related (workspace_id, resource_id, occurred, event_id)
    SELECT e.workspace_id, json_extract(r.value, '$."{RESOURCE_ID}"'), e.occurred, e.id
    FROM events e, json_each(e.doc, '$.related') r WHERE json_type(r.value, '$."{RESOURCE_ID}"') = 'text'
"""


def like_pattern(pattern: str) -> str:
    """A ``*`` wildcard pattern as a LIKE pattern (with ``\\`` escaping LIKE's own characters)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


class SqliteEventsMixin:
    """Events half of :class:`~control_plane.storage.sqlite.SqliteStore` (which provides these helpers)."""

    if TYPE_CHECKING:
        _integrity_errors: tuple[type[Exception], ...]

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _one(self, model: type[M], sql: str, params: tuple = ()) -> M | None: ...
        def _many(self, model: type[M], sql: str, params: tuple = ()) -> list[M]: ...
        def _insert(self, table: str, columns: dict, what: str) -> None: ...

    # ------------------------------------------------------------------ events
    def append_events(self, events: list[Event]) -> int:
        if not events:
            return 0
        rows = [(e.workspace_id, ts(e.occurred), e.id, e.event, e.resource_id, e.model_dump_json()) for e in events]
        related = [(e.workspace_id, r[RESOURCE_ID], ts(e.occurred), e.id) for e in events for r in e.related
                   if isinstance(r.get(RESOURCE_ID), str)]
        with self._write() as conn:
            added = conn.executemany("INSERT INTO events (workspace_id, occurred, id, event, resource_id, doc) "
                                     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows).rowcount
            if related:
                conn.executemany("INSERT INTO event_related (workspace_id, resource_id, occurred, event_id) "
                                 "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", related)
            return added

    def list_events(self, workspace_id: str, flt: EventFilter, limit: int = 100) -> list[Event]:
        # An exact related id is read from event_related's index and joined to its events; a pattern (``*``) is
        # matched against each event's related list.
        exact_related = flt.related_id if flt.related_id and "*" not in flt.related_id else None
        where, params = ["e.workspace_id = ?"], [workspace_id]
        if flt.event_prefix:
            where.append("(e.event = ? OR e.event LIKE ? ESCAPE '\\')")
            params += [flt.event_prefix, like_pattern(flt.event_prefix) + "%"]
        if flt.resource_id:
            where.append("e.resource_id LIKE ? ESCAPE '\\'" if "*" in flt.resource_id else "e.resource_id = ?")
            params.append(like_pattern(flt.resource_id) if "*" in flt.resource_id else flt.resource_id)
        if exact_related:
            where.append("r.workspace_id = ? AND r.resource_id = ?")
            params += [workspace_id, exact_related]
        elif flt.related_id:
            where.append(self._related_pattern_clause())
            params.append(like_pattern(flt.related_id))
        if flt.since:
            where.append("e.occurred >= ?")
            params.append(ts(flt.since))
        if flt.until:
            where.append("e.occurred <= ?")
            params.append(ts(flt.until))
        if flt.after:
            occurred, _, last_id = flt.after.partition("|")
            where.append("(e.occurred, e.id) > (?, ?)" if flt.ascending else "(e.occurred, e.id) < (?, ?)")
            params += [occurred, last_id]
        order = "ASC" if flt.ascending else "DESC"
        source, by = ("event_related r JOIN events e ON e.workspace_id = r.workspace_id AND e.occurred = r.occurred "
                      "AND e.id = r.event_id", "r.occurred {0}, r.event_id {0}") if exact_related else \
            ("events e", "e.occurred {0}, e.id {0}")
        sql = f"SELECT e.doc FROM {source} WHERE {' AND '.join(where)} ORDER BY {by.format(order)} LIMIT ?"
        return self._many(Event, sql, (*params, limit))

    def _related_pattern_clause(self) -> str:
        """SQL true when one of the event's related resources matches the (LIKE) parameter."""
        return ("EXISTS (SELECT 1 FROM json_each(e.doc, '$.related') WHERE "
                f"json_extract(value, '$.\"{RESOURCE_ID}\"') LIKE ? ESCAPE '\\')")

    def _delete_old_events(self, conn: sqlite3.Connection, before: str, limit: int) -> int:
        return conn.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE occurred < ? LIMIT ?)",
                            (before, limit)).rowcount

    def delete_events_before(self, before: datetime, limit: int = 5000) -> int:
        with self._write() as conn:
            deleted = self._delete_old_events(conn, ts(before), limit)
            # An event has a few related resources: their rows go at a few times the pace (rows left over go in the
            # next pass; until then the join finds no event for them).
            conn.execute("DELETE FROM event_related WHERE (workspace_id, resource_id, occurred, event_id) IN "
                         "(SELECT workspace_id, resource_id, occurred, event_id FROM event_related "
                         "WHERE occurred < ? LIMIT ?)", (ts(before), limit * 8))
            return deleted

    # ------------------------------------------------------------------ webhooks
    def create_webhook(self, webhook: Webhook) -> Webhook:
        self._insert("webhooks", {"id": webhook.id, "workspace_id": webhook.workspace_id, "name": webhook.name,
                                  "slug": webhook.slug, "doc": webhook.model_dump_json()}, f"Webhook {webhook.name!r}")
        return webhook

    def get_webhook(self, workspace_id: str, name: str) -> Webhook | None:
        return self._one(Webhook, "SELECT doc FROM webhooks WHERE workspace_id = ? AND name = ?", (workspace_id, name))

    def get_webhook_by_slug(self, slug: str) -> Webhook | None:
        return self._one(Webhook, "SELECT doc FROM webhooks WHERE slug = ?", (slug,))

    def list_webhooks(self, workspace_id: str) -> list[Webhook]:
        return self._many(Webhook, "SELECT doc FROM webhooks WHERE workspace_id = ? ORDER BY name", (workspace_id,))

    def update_webhook(self, webhook: Webhook) -> None:
        with self._write() as conn:
            conn.execute("UPDATE webhooks SET slug = ?, doc = ? WHERE id = ? AND workspace_id = ?",
                         (webhook.slug, webhook.model_dump_json(), webhook.id, webhook.workspace_id))

    def delete_webhook(self, workspace_id: str, webhook_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM webhooks WHERE id = ? AND workspace_id = ?", (webhook_id, workspace_id))

    # ------------------------------------------------------------------ automations
    def create_automation(self, automation: Automation) -> Automation:
        self._insert("automations", {"id": automation.id, "workspace_id": automation.workspace_id,
                                     "name": automation.name, "owner_deployment_id": automation.owner_deployment_id,
                                     "doc": automation.model_dump_json()}, f"Automation {automation.name!r}")
        return automation

    def get_automation(self, workspace_id: str, automation_id: str) -> Automation | None:
        return self._one(Automation, "SELECT doc FROM automations WHERE workspace_id = ? AND id = ?",
                         (workspace_id, automation_id))

    def get_automation_by_name(self, workspace_id: str, name: str) -> Automation | None:
        return self._one(Automation, "SELECT doc FROM automations WHERE workspace_id = ? AND name = ?",
                         (workspace_id, name))

    def list_automations(self, workspace_id: str) -> list[Automation]:
        return self._many(Automation, "SELECT doc FROM automations WHERE workspace_id = ? ORDER BY name",
                          (workspace_id,))

    def update_automation(self, automation: Automation) -> None:
        try:
            with self._write() as conn:
                conn.execute("UPDATE automations SET name = ?, doc = ? WHERE id = ? AND workspace_id = ?",
                             (automation.name, automation.model_dump_json(), automation.id, automation.workspace_id))
        except self._integrity_errors as exc:
            raise AlreadyExists(f"Automation {automation.name!r} already exists") from exc

    def delete_automation(self, workspace_id: str, automation_id: str) -> None:
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM automations WHERE id = ? AND workspace_id = ?",
                                   (automation_id, workspace_id)).rowcount
            if deleted:
                conn.execute("DELETE FROM trigger_buckets WHERE automation_id = ?", (automation_id,))

    # ------------------------------------------------------------------ trigger buckets
    def get_trigger_bucket(self, automation_id: str, key: str) -> TriggerBucket | None:
        return self._one(TriggerBucket, "SELECT doc FROM trigger_buckets WHERE automation_id = ? AND key = ?",
                         (automation_id, key))

    def save_trigger_bucket(self, bucket: TriggerBucket, expect_version: int | None) -> bool:
        """Write ``bucket`` (with version ``expect_version + 1``) if the stored one still has
        ``expect_version`` (``None``: only if there is none). False when someone else changed it."""
        stored = bucket.model_copy(update={"version": (expect_version or 0) + 1})
        with self._write() as conn:
            if expect_version is None:
                changed = conn.execute(
                    "INSERT INTO trigger_buckets (automation_id, key, deadline, version, doc) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (bucket.automation_id, bucket.key, ts(bucket.deadline), stored.version,
                     stored.model_dump_json())).rowcount
            else:
                changed = conn.execute(
                    "UPDATE trigger_buckets SET deadline = ?, version = ?, doc = ? WHERE automation_id = ? AND key = ? "
                    "AND version = ?", (ts(bucket.deadline), stored.version, stored.model_dump_json(),
                                        bucket.automation_id, bucket.key, expect_version)).rowcount
        return changed == 1

    def delete_trigger_bucket(self, automation_id: str, key: str, expect_version: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM trigger_buckets WHERE automation_id = ? AND key = ? AND version = ?",
                                (automation_id, key, expect_version)).rowcount == 1

    def list_due_trigger_buckets(self, now: datetime, limit: int = 500) -> list[TriggerBucket]:
        return self._many(TriggerBucket, "SELECT doc FROM trigger_buckets WHERE deadline IS NOT NULL AND deadline <= ? "
                          "ORDER BY deadline LIMIT ?", (ts(now), limit))
