"""The dashboard's overview of a workspace: runs by state over a window (a chart drawn on the server, as SVG),
late and failed runs first, the pools' health, and what is coming up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pushpool.control_plane.api.deps import Access
from pushpool.control_plane.models import FlowRunFilter, StateType
from pushpool.control_plane.web.common import page
from pushpool.control_plane.web.pools import pool_load

#: The windows the chart offers, by their name in the URL (``?window=7d``).
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
#: A run still SCHEDULED this long after its time is late.
LATE_AFTER = timedelta(minutes=1)
LISTED = 10
#: Runs the chart counts at most (its cost per page is bounded; past it the chart says so).
COUNTED_AT_MOST = 100_000
CHART_ORDER = (StateType.FAILED, StateType.CRASHED, StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED,
               StateType.CANCELLING, StateType.CANCELLED, StateType.COMPLETED)
router = APIRouter(include_in_schema=False)


def chart_bars(counts: dict[StateType, int], width: int = 460) -> list[dict[str, Any]]:
    """One bar per state with runs: its label, count and length in the SVG (the longest fills ``width``)."""
    biggest = max(counts.values(), default=0)
    return [{"state": s, "count": counts[s], "length": max(2, round(width * counts[s] / biggest)),
             "y": i * 28} for i, s in enumerate(x for x in CHART_ORDER if counts.get(x))]


def pool_health(access: Access) -> list[dict[str, Any]]:
    """Each pool: paused or not, its active runs and limit, and the last submission error of a run waiting in it."""
    store, out = access.ctx.store, []
    for pool in sorted(store.list_work_pools(access.workspace_id), key=lambda p: p.name):
        waiting = store.list_flow_runs(access.workspace_id, FlowRunFilter(
            pool_id=pool.id, states=[StateType.SCHEDULED, StateType.PENDING], sort="scheduled_asc"), limit=50)
        error = next((run.submission_error for run in waiting if run.submission_error), None)
        out.append({"pool": pool, "waiting": len(waiting), "error": error, **pool_load(access, pool)})
    return out


@router.get("/w/{workspace}/")
def overview_page(request: Request, workspace: str,
                  window: str = Query(default="24h", pattern="^(" + "|".join(WINDOWS) + ")$")) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        store, now = access.ctx.store, access.ctx.clock.now()
        start = now - WINDOWS[window]
        counts, complete = store.count_flow_runs_by_state(access.workspace_id, start, now + timedelta(seconds=1),
                                                          at_most=COUNTED_AT_MOST)

        def runs(**filters: Any) -> list[Any]:
            return store.list_flow_runs(access.workspace_id, FlowRunFilter(**filters), limit=LISTED)

        return "overview.html", {
            "window": window, "windows": list(WINDOWS), "bars": chart_bars(counts), "complete": complete,
            "total": sum(counts.values()),
            "late": runs(states=[StateType.SCHEDULED], scheduled_before=now - LATE_AFTER, sort="scheduled_asc"),
            "failed": runs(states=[StateType.FAILED, StateType.CRASHED], scheduled_after=start),
            "upcoming": runs(states=[StateType.SCHEDULED], scheduled_after=now, sort="scheduled_asc"),
            "pools": pool_health(access), "now": now}

    return page(request, workspace, build)
