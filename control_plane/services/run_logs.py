"""Run logs kept by the control plane: accepting a runner's batches within the run's cap, and reading pages.

A runner sends its lines in numbered batches (chunks). Past the run's byte cap one last chunk
says the log was truncated and why, and nothing more is stored. Reading returns lines as text,
oldest first from a cursor (``cp:<last chunk>``, so ``flow-run logs -f`` follows) or the last
``tail`` lines.
"""

from __future__ import annotations

from datetime import timedelta

from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import FlowRun, LogChunk, LogLine, LogText
from pushpool.control_plane.services.context import ServiceContext

#: Bytes a line costs beyond its text (timestamp, level, names), for the per-run cap.
LINE_OVERHEAD = 64
#: What the truncation notice counts against the cap (it is allowed once past the cap).
NOTICE_BYTES = 1024
#: Lines one page returns at most (whole chunks: up to one chunk more).
PAGE_LINES = 5000
CURSOR_PREFIX = "cp:"
_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def chunk_size(items: list[LogLine | LogText]) -> int:
    """What a batch counts against the run's cap: its text, plus ``LINE_OVERHEAD`` per record (captured text is
    kept as one string: a byte per line)."""
    return sum(item.size() + (0 if isinstance(item, LogText) else LINE_OVERHEAD) for item in items)


def store_lines(ctx: ServiceContext, run: FlowRun, seq: int, lines: list[LogLine | LogText]) -> dict:
    """Keep a runner's batch; ``truncated`` once the run has sent all it may (the runner then stops)."""
    now = ctx.clock.now()
    keep_until = now + timedelta(days=ctx.settings.log_retention_days)
    cap = ctx.settings.max_log_bytes_per_flow_run
    chunk = LogChunk.model_construct(flow_run_id=run.id, seq=seq, received=now, lines=lines)
    if ctx.store.append_log_chunk(chunk, size=chunk_size(lines), max_bytes=cap, keep_until=keep_until):
        accepted = chunk.line_count()
        ctx.metrics.log_lines(accepted)
        return {"accepted": accepted, "truncated": False}
    notice = LogLine(timestamp=now, level=30, logger="pushpool", message=(
        f"[pushpool] log truncated: flow run {run.name!r} sent more than {cap} bytes of log lines, the most one run "
        "may keep (PUSHPOOL_MAX_LOG_BYTES_PER_FLOW_RUN); later lines were dropped"))
    ctx.store.append_log_chunk(LogChunk(flow_run_id=run.id, seq=seq, received=now, lines=[notice]),
                               size=NOTICE_BYTES, max_bytes=cap + NOTICE_BYTES, keep_until=keep_until)
    return {"accepted": 0, "truncated": True}


def format_line(line: LogLine) -> str:
    if line.stream != "log":
        return line.message
    level = _LEVELS.get(line.level, str(line.level))
    return f"{line.timestamp.strftime('%H:%M:%S.%f')[:-3]} | {level:<7} | {line.logger or 'run'} - {line.message}"


def formatted(chunks: list[LogChunk]) -> list[str]:
    """The chunks' lines as text, in order."""
    out: list[str] = []
    for chunk in chunks:
        for item in chunk.lines:
            if isinstance(item, LogText):
                out.extend(item.lines())
            else:
                out.append(format_line(item))
    return out


def has_lines(ctx: ServiceContext, run: FlowRun) -> bool:
    return bool(ctx.store.list_log_chunks(run.id, limit=1))


def _enough(chunks: list[LogChunk], lines: int) -> list[LogChunk]:
    """The first of ``chunks`` that hold at least ``lines`` lines between them (all of them if they hold fewer)."""
    taken: list[LogChunk] = []
    count = 0
    for chunk in chunks:
        taken.append(chunk)
        count += chunk.line_count()
        if count >= lines:
            break
    return taken


def read_page(ctx: ServiceContext, run: FlowRun, *, tail: int | None, cursor: str | None) -> dict:
    """``{"lines": [...], "cursor": "cp:<seq>"}``: the lines after ``cursor``, or the last ``tail`` lines."""
    after = None
    if cursor:
        try:
            after = int(cursor.removeprefix(CURSOR_PREFIX))
        except ValueError:
            raise InvalidInput(f"cursor: {cursor!r} is not a cursor this API returned") from None
    if tail is not None and after is None:
        chunks = _enough(ctx.store.list_log_chunks(run.id, newest_first=True, limit=max(1, tail)), tail)
        chunks.reverse()
        lines = formatted(chunks)[-tail:]
    else:
        chunks = _enough(ctx.store.list_log_chunks(run.id, after=after, limit=1000), PAGE_LINES)
        lines = formatted(chunks)
    last = chunks[-1].seq if chunks else after
    return {"lines": lines, "cursor": None if last is None else f"{CURSOR_PREFIX}{last}"}
