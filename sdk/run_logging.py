"""Logs of a run: ``get_run_logger()``, ``log_prints``, and the runner's capture of stdout and stderr.

Inside a deployment's run, the runner sends every line to the control plane (``pushpool
flow-run logs`` reads them from anywhere) while still writing it where it went before (the
container's log, which the cloud keeps). ``get_run_logger()`` logs through the ``pushpool.run``
logger, named after the flow or task run; ``log_prints=True`` (on a flow or a task) turns that
code's ``print()`` calls into INFO records of that logger. Output written below Python (a C
library, a subprocess writing to the inherited descriptor) reaches the container's log only.
"""

from __future__ import annotations

import builtins
import io
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from pushpool.context import current_flow_run, current_task_run

RUN_LOGGER_NAME = "pushpool.run"
#: The longest line sent; longer lines are sent in pieces of this many characters.
MAX_LINE_CHARS = 16_384
_CONSOLE_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_name)s - %(message)s"


class RunLoggerAdapter(logging.LoggerAdapter):
    """Adds the flow or task run the record belongs to."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        task_run = current_task_run()
        flow_run = current_flow_run()
        if task_run is not None:
            extra = {"run_name": task_run.task_name, "task_run_id": task_run.task_run_id}
        else:
            extra = {"run_name": (flow_run.flow_name if flow_run else None) or "run", "task_run_id": None}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs


def _console_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)  # the real stderr: never shipped twice
    handler.setFormatter(logging.Formatter(_CONSOLE_FORMAT, datefmt="%H:%M:%S"))
    return handler


_setup_lock = threading.Lock()


def get_run_logger() -> logging.LoggerAdapter:
    """The logger of the current flow or task run (outside a run: the same logger, printing to stderr)."""
    logger = logging.getLogger(RUN_LOGGER_NAME)
    with _setup_lock:
        if not logger.handlers:
            logger.addHandler(_console_handler())
            logger.setLevel(logging.INFO)
            logger.propagate = False
    return RunLoggerAdapter(logger, {})


def _captured(message: str, stream: str, task_run_id: str | None, now: float) -> dict[str, Any]:
    """A captured stdout/stderr line as sent: level 20 and no task run are the defaults, so they are left out
    (less to encode for every line); times are epoch seconds, which the API reads as times."""
    record: dict[str, Any] = {"timestamp": now, "message": message, "stream": stream}
    if task_run_id is not None:
        record["task_run_id"] = task_run_id
    return record


def _pieces(text: str) -> Iterator[str]:
    for start in range(0, max(len(text), 1), MAX_LINE_CHARS):
        yield text[start:start + MAX_LINE_CHARS]


class ShippingHandler(logging.Handler):
    """Sends each record of the run logger to the log shipper."""

    def __init__(self, emit_line: Any) -> None:
        super().__init__(logging.NOTSET)
        self._emit_line = emit_line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a record that cannot be formatted must not break the flow
            message = str(record.msg)
        for piece in _pieces(message):
            self._emit_line({"timestamp": time.time(), "level": record.levelno, "message": piece, "stream": "log",
                             "logger": getattr(record, "run_name", None) or record.name,
                             "task_run_id": getattr(record, "task_run_id", None)})


class TeeStream(io.TextIOBase):
    """Writes through to ``original`` and sends each complete line to the shipper as ``stream``."""

    def __init__(self, original: TextIO, emit_line: Any, stream: str) -> None:
        self.original, self._emit_line, self.stream = original, emit_line, stream
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.original.write(text)
        if "\n" not in text:  # print() writes its text, then its end: only the end completes a line
            with self._lock:
                self._partial += text
                if len(self._partial) <= MAX_LINE_CHARS:
                    return written
                whole = len(self._partial) - len(self._partial) % MAX_LINE_CHARS  # send the whole pieces
                complete, self._partial = [self._partial[:whole]], self._partial[whole:]
        else:
            with self._lock:
                *complete, self._partial = (self._partial + text).split("\n")
        task_run = current_task_run()
        task_run_id = task_run.task_run_id if task_run is not None else None
        now = time.time()
        for line in complete:
            for piece in (line,) if len(line) <= MAX_LINE_CHARS else _pieces(line):
                self._emit_line(_captured(piece, self.stream, task_run_id, now))
        return written

    def flush(self) -> None:
        self.original.flush()

    def close_partial(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self._emit_line(_captured(rest, self.stream, None, time.time()))

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.original.fileno()


_original_print = builtins.print


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    """``print``, except in code running with ``log_prints``: there it is an INFO record of the run logger."""
    if file is None or file is sys.stdout:
        task_run = current_task_run()
        flow_run = current_flow_run()
        wanted = task_run.log_prints if task_run is not None else bool(flow_run and flow_run.log_prints)
        if wanted:
            get_run_logger().info((sep if sep is not None else " ").join(str(a) for a in args))
            return
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


@contextmanager
def shipping_logs(emit_line: Any) -> Iterator[None]:
    """For the runner: capture stdout/stderr, ship the run logger's records, and honour ``log_prints``."""
    logger = get_run_logger().logger
    handler = ShippingHandler(emit_line)
    logger.addHandler(handler)
    out, err = TeeStream(sys.stdout, emit_line, "stdout"), TeeStream(sys.stderr, emit_line, "stderr")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    builtins.print = _print
    try:
        yield
    finally:
        builtins.print = _original_print
        sys.stdout, sys.stderr = saved
        out.close_partial()
        err.close_partial()
        logger.removeHandler(handler)
