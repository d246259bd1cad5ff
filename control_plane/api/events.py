"""Events of a workspace: filtered and paged (``pushpool events ls``, ``pushpool events stream``), and emitted
by clients and flows."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ValidationError

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.schemas import EventIn
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.event_models import RESOURCE_ID, RESOURCE_ROLE, Event, EventFilter
from pushpool.control_plane.services.events import resource
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.storage.records import ts

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["events"])


class EventPage(BaseModel):
    events: list[Event]
    #: Pass as ``after`` for the next page (None: this was the last one).
    next: str | None = None
    #: The cursor just after this page's last event, to follow new events from there (None: no events).
    last: str | None = None


@router.get("/events", response_model=EventPage)
def list_events(
    event: str | None = Query(default=None, description="Event name prefix, e.g. pushpool.flow-run."),
    resource: str | None = Query(default=None, description="Resource id; * matches anything"),
    related: str | None = Query(default=None, description="Id of a related resource (a run's deployment, …); *"),
    since: datetime | None = None,
    until: datetime | None = None,
    order: str = Query(default="desc", pattern="^(asc|desc)$"),
    after: str | None = Query(default=None, description="The `next` of the previous page"),
    limit: int = Query(default=100, ge=1, le=1000),
    access: Access = Depends(workspace_access),
):
    access.require(Permission.READ)
    if after is not None and "|" not in after:
        raise InvalidInput("after: not a cursor of this API (use the 'next' of the previous page)")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name}: give a timezone (e.g. 2026-12-01T10:00:00Z)")
    flt = EventFilter(event_prefix=event, resource_id=resource, related_id=related, since=since, until=until,
                      ascending=order == "asc", after=after)
    events = access.ctx.store.list_events(access.workspace_id, flt, limit)
    last = f"{ts(events[-1].occurred)}|{events[-1].id}" if events else None
    return EventPage(events=events, next=last if len(events) == limit else None, last=last)


#: How far from now a client's ``occurred`` may be.
OCCURRED_WINDOW = timedelta(days=1)


@router.post("/events", response_model=Event, status_code=status.HTTP_201_CREATED)
def emit_event(body: EventIn, access: Access = Depends(workspace_access)):
    """Emit an event (automations see it like any other): a developer's, or a flow's with its run token. A run's
    events name the run as their resource (by default) or among their related resources, always."""
    ctx = access.ctx
    now = ctx.clock.now()
    if body.occurred is not None and abs(body.occurred - now) > OCCURRED_WINDOW:
        raise InvalidInput("occurred: must be within a day of now")
    related = [{RESOURCE_ROLE: "related", **r} for r in body.related]
    if access.caller.run is not None:
        run = access.caller.run
        run_resource = resource("flow-run", run.id, run.name)
        if body.resource is None:
            chosen = run_resource
        else:
            chosen = dict(body.resource)
            related.append({**run_resource, RESOURCE_ROLE: "flow-run"})
        related += ctx.events.run_related(run)
    else:
        access.require(Permission.WRITE)
        if body.resource is None:
            raise InvalidInput(f"resource: an event needs a resource (a '{RESOURCE_ID}' label)")
        chosen = dict(body.resource)
    try:
        event = Event(workspace_id=access.workspace_id, occurred=body.occurred or now, received=now,
                      event=body.event, resource=chosen, related=related, payload=body.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    ctx.events.add(event)
    return event
