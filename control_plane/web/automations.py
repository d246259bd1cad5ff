"""The dashboard's automations, webhooks and events: the automations and webhooks with enable/disable (for
members who may change the workspace), the events feed with filters and cursor pages, and an event's detail.

An event's page is addressed by its id and the time it occurred (``/w/WS/events/ID?at=TIME``): events are
kept in time order, so that finds it with one bounded read on either store.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pushpool.control_plane.api import automations as automation_routes
from pushpool.control_plane.api import webhooks as webhook_routes
from pushpool.control_plane.api.deps import Access
from pushpool.control_plane.errors import NotFound
from pushpool.control_plane.event_models import RESOURCE_ID, RESOURCE_NAME, Automation, Event, EventFilter
from pushpool.control_plane.storage.records import from_ts, ts
from pushpool.control_plane.web.common import act, page, ws_path
from pushpool.control_plane.web.run_list import parse_time

EVENTS_PAGE = 50
#: ``occurred|id`` of the last event of a page, as the events API pages.
EVENT_CURSOR = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\|[0-9A-Za-z-]{1,64}$"
EVENT_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"
router = APIRouter(include_in_schema=False)


def trigger_summary(automation: Automation) -> str:
    """One line a person reads: which events, how many, within what time (or their absence)."""
    trigger = automation.trigger
    events = ", ".join(trigger.expect) or "any event"
    count = f"{trigger.threshold}× " if trigger.threshold > 1 else ""
    window = f" within {trigger.within:g} s" if trigger.within else ""
    if trigger.posture.value == "Proactive":
        return f"fewer than {trigger.threshold} of {events}{window} after {', '.join(trigger.after)}"
    matched = ", ".join(f"{k}={v}" for k, v in trigger.match.items())
    return f"{count}{events}{window}" + (f" on {matched}" if matched else "")


def describe(event: Event) -> dict[str, Any]:
    """An event as listed: its link (id and time), resource name and id, related resources."""
    return {"event": event, "at": ts(event.occurred), "name": event.resource.get(RESOURCE_NAME, ""),
            "resource_id": event.resource_id}


@router.get("/w/{workspace}/automations")
def automations_page(request: Request, workspace: str) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        store = access.ctx.store
        automations = sorted(store.list_automations(access.workspace_id), key=lambda a: a.name)
        owners = {i: store.get_deployment(access.workspace_id, i) for i in {a.owner_deployment_id for a in automations}
                  if i is not None}
        rows = [{"automation": a, "trigger": trigger_summary(a), "actions": [x.type for x in a.actions],
                 "owner": owners.get(a.owner_deployment_id or "")} for a in automations]
        webhooks = sorted(store.list_webhooks(access.workspace_id), key=lambda w: w.name)
        return "automations.html", {"rows": rows, "webhooks": webhooks}

    return page(request, workspace, build)


@router.get("/w/{workspace}/events")
def events_page(request: Request, workspace: str,
                event: str | None = Query(default=None, max_length=1024),
                resource: str | None = Query(default=None, max_length=300),
                related: str | None = Query(default=None, max_length=300),
                since: str | None = Query(default=None, alias="from", max_length=40),
                until: str | None = Query(default=None, alias="to", max_length=40),
                after: str | None = Query(default=None, pattern=EVENT_CURSOR)) -> Response:
    filters = {"event": event or None, "resource": resource or None, "related": related or None,
               "from": since or None, "to": until or None}

    def build(access: Access) -> tuple[str, dict]:
        flt = EventFilter(event_prefix=event or None, resource_id=resource or None, related_id=related or None,
                          since=parse_time("from", since), until=parse_time("to", until), after=after)
        found = access.ctx.store.list_events(access.workspace_id, flt, EVENTS_PAGE + 1)
        shown = found[:EVENTS_PAGE]
        next_after = f"{ts(shown[-1].occurred)}|{shown[-1].id}" if len(found) > EVENTS_PAGE else None
        query = {k: v for k, v in filters.items() if v is not None}
        return "events.html", {
            "events": [describe(e) for e in shown], "form": filters, "filtered": bool(query),
            "next_page": urlencode({**query, "after": next_after}) if next_after else None,
            "first_page": urlencode(query) if after else None}

    return page(request, workspace, build)


@router.get("/w/{workspace}/events/{event_id}")
def event_page(request: Request, workspace: str, event_id: str,
               at: str = Query(pattern=EVENT_TIME)) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        occurred = from_ts(at)
        flt = EventFilter(since=occurred, until=occurred)
        event = next((e for e in access.ctx.store.list_events(access.workspace_id, flt, 1000) if e.id == event_id),
                     None)
        if event is None:
            raise NotFound("Event not found (it may have expired)")
        return "event.html", {"event": event, "payload": json.dumps(event.payload, indent=2, ensure_ascii=False),
                              "resource_id": event.resource_id, "resource_key": RESOURCE_ID}

    return page(request, workspace, build)


def _automation_enabled(enabled: bool):
    async def route(request: Request, workspace: str, automation_id: str) -> Response:
        def change(access: Access, _: dict[str, str]) -> str:
            automation_routes.update_automation(automation_id, automation_routes.AutomationPatch(enabled=enabled),
                                                access)
            return ws_path(access, "automations")

        return await act(request, workspace, change)

    return route


def _webhook_enabled(enabled: bool):
    async def route(request: Request, workspace: str, name: str) -> Response:
        def change(access: Access, _: dict[str, str]) -> str:
            webhook_routes.update_webhook(name, webhook_routes.WebhookPatch(enabled=enabled), access)
            return ws_path(access, "automations") + "#webhooks"

        return await act(request, workspace, change)

    return route


for _verb, _value in (("enable", True), ("disable", False)):
    router.add_api_route(f"/w/{{workspace}}/automations/{{automation_id}}/{_verb}", _automation_enabled(_value),
                         methods=["POST"])
    router.add_api_route(f"/w/{{workspace}}/webhooks/{{name}}/{_verb}", _webhook_enabled(_value), methods=["POST"])
