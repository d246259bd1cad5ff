"""Backfills: a deployment's schedule run over a past range, as a record the scheduler works through.

A backfill does not create its runs when it is asked for: the scheduler pass
(:mod:`control_plane.services.backfills`) creates them a few at a time, at most ``max_active``
of them not final at once, in order (or backwards), and keeps the record's progress. See
docs/backfills.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from pushpool.control_plane.models import Record, UtcDatetime, new_id

#: The most occurrences one backfill may cover (split a longer range into several backfills).
MAX_BACKFILL_OCCURRENCES = 10_000
#: The most of a backfill's runs that may be active at once, and the default.
MAX_ACTIVE_LIMIT = 100
DEFAULT_MAX_ACTIVE = 10
_RUN_IDS = uuid.UUID("6a1d8f5e-2b07-4c38-9a51-3f0c2e7b9d44")


class BackfillState(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"

    @property
    def is_final(self) -> bool:
        return self in (BackfillState.CANCELLED, BackfillState.COMPLETED)


class Reprocess(StrEnum):
    """Which occurrences that already have a run get another: ``none`` (only those without one), ``failed`` (those
    too whose latest run failed or crashed), ``all`` (every one, unless a run of it is still active)."""

    NONE = "none"
    FAILED = "failed"
    ALL = "all"


class Backfill(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    deployment_id: str
    #: ``flow/deployment``, for people.
    deployment_name: str
    schedule_id: str
    start: UtcDatetime
    end: UtcDatetime
    reprocess: Reprocess = Reprocess.NONE
    max_active: int = Field(default=DEFAULT_MAX_ACTIVE, ge=1, le=MAX_ACTIVE_LIMIT)
    backwards: bool = False
    #: Given to every run on top of the schedule's and the deployment's parameters.
    parameters: dict[str, Any] = Field(default_factory=dict)
    state: BackfillState = BackfillState.RUNNING
    #: The schedule's occurrences in ``[start, end]``.
    total: int = 0
    #: Occurrences looked at so far: the next is after this time (backwards: before it); None: none yet.
    cursor: UtcDatetime | None = None
    #: Every occurrence has been looked at.
    exhausted: bool = False
    created_runs: int = 0
    #: Occurrences left alone because they already had a run (``reprocess`` says which).
    skipped: int = 0
    #: Its runs not final yet (at most ``max_active``).
    active_run_ids: list[str] = Field(default_factory=list)
    #: Its runs that ended, by final state type.
    finished: dict[str, int] = Field(default_factory=dict)
    created_by: str | None = None
    #: Why it ended other than by running every occurrence (its deployment or schedule went, or someone cancelled).
    message: str | None = None
    #: Incremented by every write; a write is refused when the record changed since it was read.
    version: int = 0
    created: UtcDatetime
    updated: UtcDatetime
    ended: UtcDatetime | None = None

    @property
    def tag(self) -> str:
        return backfill_tag(self.id)


def backfill_tag(backfill_id: str) -> str:
    """The tag each run of a backfill carries."""
    return f"backfill:{backfill_id}"


def backfill_run_id(backfill_id: str, occurrence: datetime) -> str:
    """The id of a backfill's run of ``occurrence``: the same in every pass, so two passes that race create it
    once and both know its id."""
    return str(uuid.uuid5(_RUN_IDS, f"{backfill_id}:{occurrence.isoformat()}"))
