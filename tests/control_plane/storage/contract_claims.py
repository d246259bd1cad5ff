"""The Store contract for the dispatcher's claim: time, prefetch, pauses and priorities, the pool's, queues' and
deployments' limits (also across concurrent claimers), collision strategies, and the submission lease. Every
backend's test class mixes it in with :class:`~tests.control_plane.storage.contract.StoreContract`."""

from __future__ import annotations

import threading
from datetime import timedelta

from pushpool.control_plane.models import CollisionStrategy, Overlap, StateType
from tests.control_plane.storage.contract import LEASE, T0, state


class ClaimsContract:
    def test_claim_respects_time_prefetch_pause_and_priority(self, world):
        pool, default = world.pool(prefetch_seconds=30)
        urgent = world.queue(pool, "urgent", priority=0)
        paused = world.queue(pool, "paused", paused=True)
        dep = world.deployment(pool, default)
        later = world.run(dep, T0 + timedelta(seconds=20))
        normal = world.run(dep, T0 - timedelta(seconds=5))
        first = world.run(dep, T0 + timedelta(seconds=10), queue=urgent)
        world.run(dep, T0, queue=paused)
        world.run(dep, T0 + timedelta(seconds=31))
        claim = world.store.claim_flow_runs(pool.id, T0, LEASE, limit=10)
        assert [r.id for r in claim.claimed] == [first.id, normal.id, later.id]
        assert all(r.state.type is StateType.PENDING and r.lease_until == LEASE and r.submission_attempts == 1
                   for r in claim.claimed)
        assert world.store.claim_flow_runs(pool.id, T0, LEASE, limit=10).claimed == []

    def test_paused_pool_claims_nothing(self, world):
        pool, queue = world.pool(paused=True)
        world.run(world.deployment(pool, queue))
        assert world.store.claim_flow_runs(pool.id, T0, LEASE, limit=10).claimed == []

    def test_claim_honours_pool_queue_and_deployment_limits(self, world):
        pool, default = world.pool(concurrency_limit=3)
        small = world.queue(pool, "small", concurrency_limit=1)
        limited = world.deployment(pool, default, "limited", concurrency_limit=1)
        free = world.deployment(pool, default, "free")
        for i in range(3):
            world.run(limited, T0 + timedelta(seconds=i))
            world.run(free, T0 + timedelta(seconds=i), queue=small)
            world.run(free, T0 + timedelta(seconds=10 + i))
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, limit=10)
        assert len(claim.claimed) == 3
        per = {(r.deployment_id, r.queue_id) for r in claim.claimed}
        assert (limited.id, default.id) in per and (free.id, small.id) in per
        assert sum(r.deployment_id == limited.id for r in claim.claimed) == 1
        # Nothing more while the pool is full; a run ending frees its slot at once.
        assert world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, 10).claimed == []
        world.store.set_flow_run_state(claim.claimed[0].id, state(StateType.CRASHED))
        again = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, 10).claimed
        assert len(again) == 1

    def test_runs_held_back_by_a_limit_do_not_hide_the_ones_behind_them(self, world):
        """More runs held back than a claim reads at a time (a queue at its limit, a deployment waiting to
        buffer): the claim goes on past them to the runs of other queues and deployments."""
        pool, default = world.pool()
        open_queue = world.queue(pool, "open", priority=5)
        small = world.queue(pool, "small", priority=0, concurrency_limit=1)
        waiting = world.deployment(pool, default, "waiting", overlap=Overlap.BUFFER_ONE)
        dep = world.deployment(pool, default, "dep")
        for i in range(130):  # in the small queue, due first: one may run
            world.run(dep, T0 + timedelta(milliseconds=i), queue=small)
        buffered = world.run(waiting, T0 + timedelta(seconds=1))
        later = [world.run(dep, T0 + timedelta(seconds=2 + i), queue=open_queue) for i in range(3)]
        active = world.run(waiting, T0 - timedelta(minutes=5), idempotency_key="active")
        world.store.set_flow_run_state(active.id, state(StateType.RUNNING))
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, limit=10)
        ids = [r.id for r in claim.claimed]
        assert len(ids) == 4 and ids[1:] == [r.id for r in later]  # one of the small queue's, then the others
        assert buffered.id not in ids and claim.cancelled == []
        assert world.store.get_flow_run(None, buffered.id).state.type is StateType.SCHEDULED  # still waiting

    def test_of_several_runs_due_only_the_newest_survives_cancel_other(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue, "latest", overlap=Overlap.CANCEL_OTHER)
        runs = [world.run(dep, T0 + timedelta(seconds=i)) for i in range(70)]
        world.run(dep, T0 + timedelta(minutes=5))  # not due yet: not the newest due run
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(minutes=2), LEASE, limit=10)
        assert [r.id for r in claim.claimed] == [runs[-1].id]
        assert sorted(r.id for r in claim.cancelled) == sorted(r.id for r in runs[:-1])

    def test_active_runs_of_a_pool_are_counted_as_they_come_and_go(self, world):
        pool, queue = world.pool(concurrency_limit=5)
        other, other_queue = world.pool("other")
        dep, elsewhere = world.deployment(pool, queue), world.deployment(other, other_queue, "elsewhere")
        runs = [world.run(dep) for _ in range(3)]
        world.run(elsewhere)
        store = world.store
        assert store.count_active_runs(pool.id) == 0
        claimed = store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, 10).claimed
        assert len(claimed) == 3 and store.count_active_runs(pool.id) == 3
        store.set_flow_run_state(runs[0].id, state(StateType.RUNNING))
        store.set_flow_run_state(runs[1].id, state(StateType.COMPLETED))
        assert store.count_active_runs(pool.id) == 2 and store.count_active_runs(other.id) == 0

    def test_cancel_new_strategy(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue, concurrency_limit=1, collision_strategy=CollisionStrategy.CANCEL_NEW)
        first, second = world.run(dep, T0), world.run(dep, T0 + timedelta(seconds=1))
        claim = world.store.claim_flow_runs(pool.id, T0 + timedelta(seconds=5), LEASE, 10)
        assert [r.id for r in claim.claimed] == [first.id]
        assert [r.id for r in claim.cancelled] == [second.id]
        assert world.store.get_flow_run(None, second.id).state.type is StateType.CANCELLED

    def test_concurrent_claims_never_overlap_or_exceed_limits(self, world, store_factory):
        pool, queue = world.pool(concurrency_limit=40)
        dep = world.deployment(pool, queue)
        for i in range(120):
            world.run(dep, T0 + timedelta(milliseconds=i))
        claimed: list[str] = []
        lock = threading.Lock()

        def dispatcher() -> None:
            store = store_factory()
            for _ in range(20):
                got = store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), LEASE, limit=3).claimed
                with lock:
                    claimed.extend(r.id for r in got)

        threads = [threading.Thread(target=dispatcher) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(claimed) == len(set(claimed)) == 40

    # ------------------------------------------------------------------ submission leases
    def test_submission_lease(self, world):
        pool, queue = world.pool()
        world.run(world.deployment(pool, queue))
        run = world.store.claim_flow_runs(pool.id, T0, LEASE, 10).claimed[0]
        store = world.store
        assert store.list_submittable_runs(T0, 10) == []
        assert store.acquire_submission(run.id, T0, LEASE) is None
        after = LEASE + timedelta(seconds=1)
        assert [r.id for r in store.list_submittable_runs(after, 10)] == [run.id]
        taken = store.acquire_submission(run.id, after, after + timedelta(minutes=2))
        assert taken.submission_attempts == 2
        assert store.acquire_submission(run.id, after, after + timedelta(minutes=2)) is None
        store.update_flow_run(run.id, {"lease_until": None, "next_attempt_at": after + timedelta(seconds=30)})
        assert store.list_submittable_runs(after, 10) == []
        assert store.acquire_submission(run.id, after + timedelta(seconds=31), LEASE + timedelta(hours=1))
        store.update_flow_run(run.id, {"infra_id": "i-1", "lease_until": None})
        assert store.list_submittable_runs(after + timedelta(hours=2), 10) == []
