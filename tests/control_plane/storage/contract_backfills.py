"""The Store contract for backfills and for the overlap policies the claim applies. Every backend's test class
mixes it in with :class:`StoreContract`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pushpool.control_plane.backfill_models import Backfill, BackfillState
from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import Overlap, StateType, Workspace
from tests.control_plane.storage.contract import LEASE, T0, state


def a_backfill(world, dep, **fields) -> Backfill:
    return Backfill(workspace_id=world.ws.id, deployment_id=dep.id, deployment_name="flow/dep",
                    schedule_id="s", start=T0 - timedelta(days=30), end=T0, total=30, created=T0, updated=T0,
                    **fields)


class BackfillsContract:
    def test_backfills_are_kept_per_workspace_and_saved_only_from_the_version_read(self, world):
        store = world.store
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        first = store.create_backfill(a_backfill(world, dep))
        second = store.create_backfill(a_backfill(world, dep, max_active=3))
        with pytest.raises(AlreadyExists):
            store.create_backfill(first)
        other = store.create_workspace(Workspace(name="other", created=T0))
        assert store.get_backfill(other.id, first.id) is None and store.list_backfills(other.id) == []
        assert store.get_backfill(world.ws.id, first.id) == first
        assert [b.id for b in store.list_backfills(world.ws.id)] == [second.id, first.id]  # newest first
        assert [b.id for b in store.list_backfills(world.ws.id, deployment_id="nope")] == []
        assert [b.id for b in store.list_running_backfills()] == [first.id, second.id]
        moved = store.save_backfill(first.model_copy(update={"cursor": T0 - timedelta(days=29), "created_runs": 1,
                                                             "active_run_ids": ["r1"]}))
        assert moved is not None and moved.version == 1
        assert store.save_backfill(first.model_copy(update={"created_runs": 9})) is None  # read before that write
        assert store.get_backfill(world.ws.id, first.id).created_runs == 1
        paused = store.save_backfill(moved.model_copy(update={"state": BackfillState.PAUSED}))
        assert [b.id for b in store.list_running_backfills()] == [second.id]
        store.save_backfill(paused.model_copy(update={"state": BackfillState.RUNNING}))
        assert [b.id for b in store.list_running_backfills()] == [first.id, second.id]

    def test_claim_skips_what_overlap_skip_and_buffer_one_say(self, world):
        pool, queue = world.pool()
        skip = world.deployment(pool, queue, "skip", overlap=Overlap.SKIP)
        buffer = world.deployment(pool, queue, "buffer", overlap=Overlap.BUFFER_ONE)
        runs = {name: [world.run(dep, T0 + timedelta(seconds=i)) for i in range(3)]
                for name, dep in (("skip", skip), ("buffer", buffer))}
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, 10)
        assert {r.id for r in claim.claimed} == {runs["skip"][0].id, runs["buffer"][0].id}
        assert {r.id for r in claim.cancelled} == {runs["skip"][1].id, runs["skip"][2].id, runs["buffer"][2].id}
        assert all(r.state.name == "Skipped" for r in claim.cancelled)
        assert world.store.get_flow_run(None, runs["buffer"][1].id).state.type is StateType.SCHEDULED
        assert not claim.displacing

    def test_claim_keeps_the_newest_and_asks_to_displace_for_cancel_other(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue, overlap=Overlap.CANCEL_OTHER)
        active = world.run(dep, T0 - timedelta(minutes=5))
        older, newest = world.run(dep, T0), world.run(dep, T0 + timedelta(seconds=1))
        first = world.store.claim_flow_runs(pool.id, T0 - timedelta(minutes=4), LEASE, 10)  # only it is due then
        assert [r.id for r in first.claimed] == [active.id]
        world.store.set_flow_run_state(active.id, state(StateType.RUNNING, T0 - timedelta(minutes=4)))
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, 10)
        assert claim.claimed == [] and [r.id for r in claim.cancelled] == [older.id]
        assert claim.displacing == {dep.id}
        assert world.store.get_flow_run(None, newest.id).state.type is StateType.SCHEDULED
        world.store.set_flow_run_state(active.id, state(StateType.CANCELLED, T0 + timedelta(seconds=30)))
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, 10)
        assert [r.id for r in claim.claimed] == [newest.id] and not claim.displacing
