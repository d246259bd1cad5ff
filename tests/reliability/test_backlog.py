"""Restart and backlog: the control plane was down 10 minutes; its pools' late-run policies
decide what the backlog does, with no stampede, and concurrency limits hold throughout."""

from __future__ import annotations

from collections import Counter

import pytest

from pushpool.control_plane.services.ticker import Ticker
from tests.fakes.pushers import RecordingPusher


def states_of(api, dep_id: str) -> Counter:
    runs = api.ok("GET", api.ws("/flow_runs"), params={"deployment_id": dep_id, "limit": 1000})
    return Counter((r["state"]["type"], r["state"]["name"]) for r in runs)


@pytest.mark.parametrize("policy, expect_submitted", [
    ({"mode": "run_all"}, 10),                               # every missed run, two at a time
    ({"mode": "latest_only"}, 1),                            # only the newest missed run
    ({"mode": "skip_late", "skip_after_seconds": 150}, 3),   # only runs at most 150 s late
])
def test_backlog_after_ten_minutes_down(api, ctx, clock, fake_pusher: RecordingPusher, policy, expect_submitted):
    api.pool(concurrency_limit=2, late_run_policy=policy)
    dep = api.deployment(schedules=[{"interval": 60}])
    clock.advance(minutes=10, seconds=1)  # down: no tick for ten minutes, ten runs missed
    ticker = Ticker(ctx)
    submitted: set[str] = set()
    for _ in range(8):  # back up: ticks, with runs finishing between them
        ticker.tick()
        active = [j for j in fake_pusher.jobs if j.flow_run_id not in submitted]
        assert len(active) <= 2, "the pool's concurrency limit held"
        for job in active:
            submitted.add(job.flow_run_id)
            fake_pusher.finish(job.flow_run_id, 0)
        ticker.reconciler.run_once()
    ticker.stop()
    assert len(submitted) == expect_submitted
    assert len(fake_pusher.jobs) == len(set(j.flow_run_id for j in fake_pusher.jobs))
    counts = states_of(api, dep["id"])
    skipped = counts[("CANCELLED", "Skipped")]
    assert skipped == 10 - expect_submitted
    # No missed run is left waiting: all were either pushed or skipped.
    assert not [k for k in counts if k[0] == "SCHEDULED" and k[1] == "Late"]
