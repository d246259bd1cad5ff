"""The flow-run state machine: which transitions are allowed, and state constructors."""

from __future__ import annotations

from datetime import datetime

from pushpool.control_plane.errors import Conflict
from pushpool.control_plane.models import State, StateType

S = StateType

ALLOWED: dict[StateType, frozenset[StateType]] = {
    S.SCHEDULED: frozenset({S.SCHEDULED, S.PENDING, S.CANCELLED}),
    S.PENDING: frozenset({S.RUNNING, S.CRASHED, S.FAILED, S.CANCELLING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING}),
    # A run being cancelled may still finish on its own; its own report wins.
    S.CANCELLING: frozenset({S.CANCELLED, S.CRASHED, S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CRASHED: frozenset(),
    S.CANCELLED: frozenset(),
}

DEFAULT_NAMES: dict[StateType, str] = {
    S.SCHEDULED: "Scheduled", S.PENDING: "Pending", S.RUNNING: "Running", S.COMPLETED: "Completed",
    S.FAILED: "Failed", S.CRASHED: "Crashed", S.CANCELLING: "Cancelling", S.CANCELLED: "Cancelled",
}


#: A RUNNING run may enter RUNNING again only under these names: its flow's own retries, in place (it keeps its
#: infrastructure and slots). Any other RUNNING → RUNNING is refused: that is how a second runner of the same run
#: learns it must not start.
RETRY_NAMES = frozenset({"AwaitingRetry", "Retrying"})


def is_retry(current: StateType, target: StateType, name: str | None) -> bool:
    return current is S.RUNNING and target is S.RUNNING and name in RETRY_NAMES


def sources_for(target: StateType) -> frozenset[StateType]:
    """Every state from which ``target`` may be entered."""
    return frozenset(src for src, targets in ALLOWED.items() if target in targets)


def check_transition(current: StateType, target: StateType) -> None:
    if target not in ALLOWED[current]:
        raise Conflict(f"Cannot move a flow run from {current.value} to {target.value}")


def make_state(type_: StateType, now: datetime, message: str | None = None, name: str | None = None) -> State:
    return State(type=type_, name=name or DEFAULT_NAMES[type_], message=message, timestamp=now)
