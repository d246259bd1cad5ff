"""Helpers every CLI command uses: the client, output as a table or JSON, confirmation, parsing."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pushpool.client import PushpoolClient
from pushpool.control_plane.errors import InvalidInput

console = Console()
err_console = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = typer.Option(Output.table, "--output", "-o", help="table (default) or json for scripts.")
YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


def get_client() -> PushpoolClient:
    return PushpoolClient()


def emit(data: Any, output: Output, render: Callable[[Any], Any]) -> None:
    """Print ``data`` as JSON, or as whatever ``render`` builds (a rich Table or text)."""
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(render(data))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for column in columns:
        # ids and URLs may fold; everything else stays on one line
        t.add_column(column, overflow="fold", no_wrap=column not in ("id", "console URL", "api url"))
    for row in rows:
        t.add_row(*("-" if v is None else str(v) for v in row))
    return t


def confirm(message: str, yes: bool) -> None:
    """Ask before a change; ``--yes`` or a non-interactive stdin skips the question."""
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm(message, default=False):
        err_console.print("Aborted; nothing was changed.")
        raise typer.Exit(1)


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, booleans, lists, objects), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{option}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def parse_json_object(text: str | None, option: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{option}: expected a JSON object")
    return value


_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hr": 3600, "hour": 3600,
          "d": 86400, "day": 86400, "w": 604800, "week": 604800}
_DURATION = re.compile(r"^\s*(?:in\s+)?(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$", re.IGNORECASE)


def parse_duration(text: str, option: str) -> timedelta:
    """``"2 hours"``, ``"in 30 minutes"``, ``"90s"``, ``"1 day"``."""
    match = _DURATION.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise InvalidInput(f"{option}: {text!r} is not a duration; use e.g. '30 seconds', '2 hours', '1 day'")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[unit])
    except OverflowError:
        raise InvalidInput(f"{option}: {text!r} is too long") from None


def parse_datetime(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{option}: {text!r} is not an ISO 8601 time such as 2026-05-01T09:00:00+00:00") from None
    if value.tzinfo is None:
        raise InvalidInput(f"{option}: {text!r} has no timezone; add one, e.g. +00:00 or Z")
    return value


def short_time(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
