"""A run's logs: the runner sends its lines with the run token; readers get them from the control plane, or,
for a run that sent none, from its infrastructure's log store through the pusher."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.flow_runs import load_run
from pushpool.control_plane.api.schemas import MAX_LOG_BYTES_PER_REPORT, LogBatch
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import LogText
from pushpool.control_plane.services import run_logs
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.pool_pushers import pusher_for

#: Times of captured text, in epoch seconds: up to 2100-01-01.
LAST_EPOCH_SECOND = 4_102_444_800
router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["logs"])


@router.post("/flow_runs/{run_id}/logs", status_code=status.HTTP_202_ACCEPTED)
def send_logs(run_id: str, body: LogBatch, access: Access = Depends(workspace_access)) -> dict:
    """Store a numbered batch of the run's lines (its own run token, or a developer). ``truncated``: the run has
    sent all the log it may keep, and the runner should stop sending."""
    run = load_run(access.ctx, access, run_id, Permission.WRITE)
    return run_logs.store_lines(access.ctx, run, body.seq, body.lines)


async def text_body(request: Request) -> str:
    """The body of a text report: UTF-8, at most ``MAX_LOG_BYTES_PER_REPORT`` bytes."""
    raw = await request.body()
    if len(raw) > MAX_LOG_BYTES_PER_REPORT:
        raise InvalidInput(f"body: {len(raw)} bytes of text in one report; send at most {MAX_LOG_BYTES_PER_REPORT}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"body: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


@router.post("/flow_runs/{run_id}/logs/text", status_code=status.HTTP_202_ACCEPTED)
def send_log_text(run_id: str, seq: int = Query(ge=0, le=10**9), stream: Literal["stdout", "stderr"] = Query(),
                  timestamp: float = Query(ge=0, le=LAST_EPOCH_SECOND),
                  access: Access = Depends(workspace_access), text: str = Depends(text_body)) -> dict:
    """Store a numbered batch that is captured text only, as a ``text/plain`` body (its lines split at
    newlines): the runner's common case, sent without JSON's cost. Otherwise as ``POST …/logs``."""
    run = load_run(access.ctx, access, run_id, Permission.WRITE)
    item = LogText(stream=stream, timestamp=datetime.fromtimestamp(timestamp, UTC), text=text)
    return run_logs.store_lines(access.ctx, run, seq, [item])


@router.get("/flow_runs/{run_id}/logs")
def read_logs(run_id: str, tail: int | None = Query(default=None, ge=1, le=10_000),
              cursor: str | None = Query(default=None, max_length=2048),
              access: Access = Depends(workspace_access)) -> dict:
    """The run's log lines: those its runner sent (``source: control_plane``), else what the pusher can read
    from the cloud's log store with the pool's credentials (``source: infrastructure``). Pass ``cursor`` back
    to read on from where a page ended."""
    ctx = access.ctx
    access.require(Permission.READ)  # not for run tokens
    run = load_run(ctx, access, run_id)
    out = {"supported": False, "source": None, "lines": [], "cursor": None, "console_url": run.console_url,
           "logs_url": run.logs_url}
    if (cursor or "").startswith(run_logs.CURSOR_PREFIX) or (cursor is None and run_logs.has_lines(ctx, run)):
        return {**out, "supported": True, "source": "control_plane",
                **run_logs.read_page(ctx, run, tail=tail, cursor=cursor)}
    pool = ctx.store.get_work_pool_by_id(access.workspace_id, run.pool_id)
    if pool is None or run.infra_id is None:
        return out
    pusher = pusher_for(ctx, pool)
    if not hasattr(pusher, "logs"):
        return out
    page = pusher.logs(run.infra_id, tail=tail, cursor=cursor)
    return {**out, "supported": True, "source": "infrastructure", "lines": page.lines, "cursor": page.cursor}
