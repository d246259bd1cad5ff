"""The dashboard's list of flow runs: filters (state, flow, deployment, pool, tag, time range), sorting by
scheduled time and cursor pages, each view a URL that can be shared.

Pages are keyset pages (:meth:`~control_plane.storage.base.Store.page_flow_runs`): a link to the next
page carries the position of the last run shown, so a page costs the same deep in the list as at its top,
and runs arriving meanwhile neither repeat nor vanish from the pages after.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pushpool.control_plane.api.deps import Access
from pushpool.control_plane.clock import utc
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import RUN_POSITION_PATTERN, FlowRunFilter, StateType
from pushpool.control_plane.web.common import page

PAGE_SIZE = 50
SORTS = {"newest": "scheduled_desc", "oldest": "scheduled_asc"}
router = APIRouter(include_in_schema=False)


def parse_time(field: str, value: str | None) -> datetime | None:
    """A time from the filter form (``datetime-local``, taken as UTC, or ISO 8601 with an offset); empty is none."""
    if not value:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a time (use 2026-06-01T12:00, UTC)") from None


@router.get("/w/{workspace}/runs")
def runs_page(request: Request, workspace: str, state: StateType | None = None,
              flow: str | None = Query(default=None, max_length=200),
              deployment: str | None = Query(default=None, max_length=64),
              pool: str | None = Query(default=None, max_length=100),
              tag: str | None = Query(default=None, max_length=200),
              since: str | None = Query(default=None, alias="from", max_length=40),
              until: str | None = Query(default=None, alias="to", max_length=40),
              sort: str = Query(default="newest", pattern="^(newest|oldest)$"),
              after: str | None = Query(default=None, pattern=RUN_POSITION_PATTERN)) -> Response:
    filters = {"state": state.value if state else None, "flow": flow or None, "deployment": deployment or None,
               "pool": pool or None, "tag": tag or None, "from": since or None, "to": until or None,
               "sort": None if sort == "newest" else sort}

    def query(**changes: Any) -> str:
        """This view's query with ``changes`` (``None`` drops a parameter): filter, sort and page links."""
        return urlencode({k: v for k, v in {**filters, **changes}.items() if v is not None})

    def build(access: Access) -> tuple[str, dict]:
        store = access.ctx.store
        pools = sorted(store.list_work_pools(access.workspace_id), key=lambda p: p.name)
        pool_id = next((p.id for p in pools if p.name == pool), "none") if pool else None
        flt = FlowRunFilter(states=[state] if state else None, flow_name=flow or None,
                            deployment_id=deployment or None, pool_id=pool_id, tags=[tag] if tag else None,
                            scheduled_after=parse_time("from", since), scheduled_before=parse_time("to", until),
                            sort=SORTS[sort], after=after)
        runs, next_after = store.page_flow_runs(access.workspace_id, flt, limit=PAGE_SIZE)
        deployments = store.list_deployment_summaries(access.workspace_id)
        return "runs.html", {
            "runs": runs, "next_page": query(after=next_after) if next_after else None,
            "first_page": query() if after else None, "filtered": any(filters.values()),
            "state": state, "states": list(StateType), "query": query, "sort": sort,
            "deployments": [(d.id, d.full_name) for d in deployments],
            "flows": [(f, f) for f in sorted({d.flow_name for d in deployments})], "pools": pools,
            "form": {**filters, "sort": sort}}

    return page(request, workspace, build)
