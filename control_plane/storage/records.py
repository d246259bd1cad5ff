"""Helpers every storage backend shares: sortable timestamps and the run-after-a-state rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pushpool.control_plane.clock import utc
from pushpool.control_plane.models import FINAL_STATES, FlowRun, State, StateType


def ts(value: datetime | None) -> str | None:
    """A datetime as a fixed-width UTC string that sorts like the time it names."""
    if value is None:
        return None
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def run_with_state(run: FlowRun, state: State, changes: dict[str, Any] | None) -> FlowRun:
    """The run after entering ``state``: timestamps follow the state, changes are applied."""
    update: dict[str, Any] = {"state": state, "updated": state.timestamp}
    if state.type is StateType.RUNNING and run.start_time is None:
        update["start_time"] = state.timestamp
    if state.type in FINAL_STATES:
        update["end_time"] = state.timestamp
        update["lease_until"] = None
    update.update(changes or {})
    return run.model_copy(update=update)
