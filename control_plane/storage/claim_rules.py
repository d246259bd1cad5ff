"""What a claim does with a due run whose deployment is at its limit: collision strategies and overlap policies.

Every store's ``claim_flow_runs`` walks the due runs in order and asks a :class:`Collisions` what to
do with one that finds no free slot in its deployment, so the rules are the same on every backend
and hold however many dispatchers claim at once (the slot itself is taken atomically by the store).

A deployment's ``overlap`` (other than ``allow``) gives it a limit of one run at a time:

* ``skip``: a run due while another is active is skipped (CANCELLED, "Skipped");
* ``buffer_one``: the first such run waits; later ones are skipped while it waits;
* ``cancel_other``: the active run is cancelled (the dispatcher does it, through the usual
  cancellation, see ``ClaimResult.displacing``) and the due run starts once it has stopped; of
  several runs due at once only the newest is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pushpool.control_plane.models import CollisionStrategy, Deployment, FlowRun, Overlap, State, StateType

#: How a store keeps an overlap policy beside the collision strategies (one column, one attribute).
SKIP, BUFFER_ONE, CANCEL_OTHER = "SKIP", "BUFFER_ONE", "CANCEL_OTHER"
_BY_OVERLAP = {Overlap.SKIP: SKIP, Overlap.BUFFER_ONE: BUFFER_ONE, Overlap.CANCEL_OTHER: CANCEL_OTHER}


def claim_limits(deployment: Deployment) -> tuple[int | None, str]:
    """(limit, strategy) as the claim applies them: the overlap policy's, else the concurrency limit's."""
    if deployment.overlap is Overlap.ALLOW:
        return deployment.concurrency_limit, deployment.collision_strategy.value
    return 1, _BY_OVERLAP[deployment.overlap]


@dataclass(frozen=True)
class DueRun:
    """What a claim decides by: a due run's id, deployment, queue and due time (a store may give these instead of
    whole runs)."""

    id: str
    deployment_id: str
    queue_id: str
    scheduled_time: datetime


@dataclass
class Collisions:
    """One claim's decisions for runs whose deployment has no free slot."""

    #: Per deployment with ``cancel_other``: the newest due run (the others are superseded).
    newest_due: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    buffered: set[str] = field(default_factory=set)
    #: Deployments whose active runs are to be cancelled (``cancel_other``).
    displacing: set[str] = field(default_factory=set)

    @classmethod
    def for_candidates(cls, runs: list[FlowRun] | list[DueRun]) -> Collisions:
        collisions = cls()
        for run in runs:
            key = (run.scheduled_time, run.id)
            if run.deployment_id not in collisions.newest_due or key > collisions.newest_due[run.deployment_id]:
                collisions.newest_due[run.deployment_id] = key
        return collisions

    def superseded(self, run: FlowRun | DueRun, strategy: str, now: datetime) -> State | None:
        """For ``cancel_other``: the state skipping ``run`` when a newer run of its deployment is due too."""
        if strategy != CANCEL_OTHER or self.newest_due.get(run.deployment_id) == (run.scheduled_time, run.id):
            return None
        return _skipped(now, "a newer run of this deployment is due (overlap cancel_other)")

    def blocked(self, run: FlowRun | DueRun, strategy: str, now: datetime) -> State | Literal["wait"]:
        """What happens to ``run`` when its deployment has no free slot: the state it is cancelled with, or wait."""
        if strategy == CollisionStrategy.CANCEL_NEW.value:
            return State(type=StateType.CANCELLED, name="Cancelled", timestamp=now,
                         message="Deployment concurrency limit reached (CANCEL_NEW)")
        if strategy == SKIP:
            return _skipped(now, "the previous run of this deployment is still active (overlap skip)")
        if strategy == BUFFER_ONE:
            if run.deployment_id in self.buffered:
                return _skipped(now, "a run of this deployment is already waiting (overlap buffer_one)")
            self.buffered.add(run.deployment_id)
        if strategy == CANCEL_OTHER:
            self.displacing.add(run.deployment_id)
        return "wait"


def _skipped(now: datetime, why: str) -> State:
    return State(type=StateType.CANCELLED, name="Skipped", timestamp=now, message=f"Skipped: {why}")
