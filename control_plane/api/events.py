"""Events of a workspace: filtered and paged (``pushpool events ls``, ``pushpool events stream``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.event_models import Event, EventFilter
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
