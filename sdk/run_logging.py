"""Logs of a run: ``get_run_logger()``, ``log_prints``, and the runner's capture of stdout and stderr.

Inside a deployment's run, the runner sends every line to the control plane (``pushpool
flow-run logs`` reads them from anywhere) while still writing it where it went before (the
container's log, which the cloud keeps): stdout and stderr are captured at the descriptors by
a relay process beside the runner (:mod:`pushpool.log_relay`; in the flow's own process,
:mod:`pushpool.output_capture`, when the relay cannot run), the run logger's records as records. ``get_run_logger()``
logs through the ``pushpool.run`` logger, named after the flow or task run; ``log_prints=True``
(on a flow or a task, or ``PUSHPOOL_LOG_PRINTS=true`` in the run's environment) turns that
code's ``print()`` calls into INFO records of that logger.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from pushpool.context import current_flow_run, current_task_run
from pushpool.control_plane.models import MAX_LOG_LINE_CHARS, line_pieces
from pushpool.log_relay import LogRelay, RelayTarget, RelayUnavailable, log_shipper_for
from pushpool.output_capture import captured_output

RUN_LOGGER_NAME = "pushpool.run"
#: The longest line sent; longer lines are sent in pieces of this many characters.
MAX_LINE_CHARS = MAX_LOG_LINE_CHARS
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


def _console_stream() -> TextIO:
    return sys.__stderr__ or sys.stderr


def _console_handler() -> logging.Handler:
    handler = logging.StreamHandler(_console_stream())
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


class ShippingHandler(logging.Handler):
    """Sends each record of the run logger to the log shipper."""

    def __init__(self, emit_line: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(logging.NOTSET)
        self._emit_line = emit_line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a record that cannot be formatted must not break the flow
            message = str(record.msg)
        for piece in line_pieces(message):
            self._emit_line({"timestamp": time.time(), "level": record.levelno, "message": piece, "stream": "log",
                             "logger": getattr(record, "run_name", None) or record.name,
                             "task_run_id": getattr(record, "task_run_id", None)})


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


def enable_log_prints() -> None:
    """Called when a flow or task run with ``log_prints`` starts: from then on ``print`` looks at the run it is
    called in. Until then (most runs) ``print`` is Python's own and costs nothing more."""
    builtins.print = _print


class LogSink(Protocol):
    """Where captured output goes in this process: the log shipper (:class:`pushpool.reporting.LogShipper`)."""

    diagnostics: TextIO

    def emit(self, line: dict[str, Any]) -> None: ...

    def emit_text(self, stream: str, text: str, timestamp: float) -> None: ...


@dataclass
class RelayedLogs:
    """For the runner: its log relay (started early) and where the relay ships to."""

    relay: LogRelay
    target: RelayTarget


@contextmanager
def shipping_logs(sink: LogSink | RelayedLogs) -> Iterator[None]:
    """For the runner: capture descriptors 1 and 2, and ship the run logger's records, while the block runs —
    through the relay process when one is given (and it starts), else in this process through ``sink``."""
    logger = get_run_logger().logger
    saved_print = builtins.print
    consoles = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and h.stream is _console_stream()]
    with _captured(sink) as (real_stderr, emit_record):
        handler = ShippingHandler(emit_record)
        for console in consoles:  # the console copy of a record goes where the container's log is, not shipped twice
            console.setStream(real_stderr)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            builtins.print = saved_print
            for console in consoles:
                console.setStream(_console_stream())


@contextmanager
def _captured(sink: LogSink | RelayedLogs) -> Iterator[tuple[TextIO, Callable[[dict[str, Any]], None]]]:
    """(the stderr from before the capture, how a record is shipped) while output is captured."""
    owned = None
    if isinstance(sink, RelayedLogs):
        try:
            relayed = sink.relay.begin(sink.target)
        except RelayUnavailable as exc:
            print(f"pushpool: {exc}; logs are captured in the flow's own process", file=sys.stderr)
            sink = owned = log_shipper_for(sink.target)
        else:
            try:
                yield relayed.real_stderr, relayed.emit_record
            finally:
                sink.relay.end()
            return
    shipper = sink
    saved_diagnostics = shipper.diagnostics
    with captured_output(shipper.emit_text) as capture:
        shipper.diagnostics = capture.real_stderr  # the shipper's own complaints are not shipped

        def emit_record(line: dict[str, Any]) -> None:
            capture.catch_up()  # what was printed before the record goes first
            shipper.emit(line)

        try:
            yield capture.real_stderr, emit_record
        finally:
            shipper.diagnostics = saved_diagnostics
    if owned is not None:
        owned.close()
