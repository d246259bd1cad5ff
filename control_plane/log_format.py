"""The control plane's own log lines: text for a person, or JSON lines for a log pipeline
(``PUSHPOOL_LOG_FORMAT=json``), each with the workspace, flow run and pool it concerns.

Services say what they work on with :func:`about` (the dispatcher for each run it submits, the reconciler for
each run it watches); every line logged meanwhile, from any module, carries those ids. Whatever the format, a
line never carries a pushpool secret: API keys and run tokens (``ppu_``, ``ppb_``, ``ppr_`` …) are masked before
a line is written, whoever logged them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_about: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("pushpool_log_about",
                                                                                      default=())
#: pushpool's secrets by their prefixes: user and service-account API keys, run tokens.
SECRET = re.compile(r"\b(pp[ubr]_)[A-Za-z0-9_\-]{8,}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def about(**ids: str | None) -> Iterator[None]:
    """Lines logged inside the block carry these ids (``workspace_id``, ``flow_run_id``, ``pool_id`` …)."""
    token = _about.set(tuple({**dict(_about.get()), **{k: v for k, v in ids.items() if v}}.items()))
    try:
        yield
    finally:
        _about.reset(token)


def masked(text: str) -> str:
    return SECRET.sub(lambda m: m.group(1) + "********", text)


class MaskSecrets(logging.Filter):
    """Masks pushpool secrets in a record's message and exception before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = masked(record.getMessage()), None
        if record.exc_info:
            record.exc_text = masked(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class TextWithIds(logging.Formatter):
    """The text format, with the ids a line concerns appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _about.get()
        return f"{line} [{' '.join(f'{k}={v}' for k, v in ids)}]" if ids else line


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the ids it concerns, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(), **dict(_about.get())}
        if record.exc_text or record.exc_info:
            out["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, log_format: str, stream: Any = None) -> None:
    """The root logger writes ``log_format`` (``text`` or ``json``) at ``level`` (to stderr), secrets masked."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines() if log_format == "json" else TextWithIds(TEXT_FORMAT))
    handler.addFilter(MaskSecrets())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def adapt_handlers(log_format: str) -> None:
    """The handlers already set up (Lambda's own): secrets masked, and JSON lines when asked for."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskSecrets())
        if log_format == "json":
            handler.setFormatter(JsonLines())
