"""The Store contract: every backend must pass these tests.

A backend's test module subclasses :class:`StoreContract` and provides two fixtures:
``contract_store`` (a fresh, empty store) and ``store_factory`` (a callable giving
another independent store object on the *same* backing data, for concurrency tests).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import (
    Actor,
    ActorKind,
    ApiKey,
    Deployment,
    FlowRun,
    FlowRunFilter,
    Membership,
    Role,
    Schedule,
    State,
    StateType,
    WorkPool,
    WorkQueue,
    Workspace,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LEASE = T0 + timedelta(minutes=2)


def state(type_: StateType, at: datetime = T0, name: str | None = None) -> State:
    return State(type=type_, name=name or type_.value.title(), timestamp=at)


class World:
    """Builds records in a store with sensible defaults."""

    def __init__(self, store) -> None:
        self.store = store
        self.ws = store.create_workspace(Workspace(name="ws", created=T0))

    def pool(self, name: str = "pool", **fields) -> tuple[WorkPool, WorkQueue]:
        pool = WorkPool(workspace_id=self.ws.id, name=name, type="local:push",
                        base_job_template={"job_configuration": {}, "variables": {"type": "object"}},
                        created=T0, updated=T0, **fields)
        queue = WorkQueue(workspace_id=self.ws.id, pool_id=pool.id, name="default", created=T0)
        self.store.create_work_pool(pool, queue)
        return pool, queue

    def queue(self, pool: WorkPool, name: str, **fields) -> WorkQueue:
        return self.store.create_work_queue(WorkQueue(workspace_id=self.ws.id, pool_id=pool.id, name=name,
                                                      created=T0, **fields))

    def deployment(self, pool: WorkPool, queue: WorkQueue, name: str = "dep", **fields) -> Deployment:
        return self.store.create_deployment(Deployment(
            workspace_id=self.ws.id, flow_name="flow", name=name, entrypoint="f.py:f", pool_id=pool.id,
            queue_id=queue.id, created=T0, updated=T0, **fields))

    def run(self, dep: Deployment, at: datetime = T0, queue: WorkQueue | None = None, **fields) -> FlowRun:
        fields = {"flow_name": dep.flow_name, **fields}
        run = FlowRun(workspace_id=self.ws.id, deployment_id=dep.id, deployment_name=dep.name, name="r",
                      pool_id=dep.pool_id, queue_id=(queue.id if queue else dep.queue_id),
                      state=state(StateType.SCHEDULED), scheduled_time=at, created=T0, updated=T0, **fields)
        return self.store.create_flow_run(run)


class StoreContract:
    @pytest.fixture
    def world(self, contract_store) -> World:
        return World(contract_store)

    def test_runs_are_counted_by_state_within_a_window_up_to_a_bound(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        for minutes, kind in ((0, StateType.SCHEDULED), (5, StateType.SCHEDULED), (10, StateType.COMPLETED),
                              (20, StateType.FAILED), (60, StateType.COMPLETED)):
            run = world.run(dep, at=T0 + timedelta(minutes=minutes))
            if kind is not StateType.SCHEDULED:
                world.store.set_flow_run_state(run.id, state(kind))
        store, ws = world.store, world.ws.id
        assert store.count_flow_runs_by_state(ws, T0, T0 + timedelta(minutes=60)) == (
            {StateType.SCHEDULED: 2, StateType.COMPLETED: 1, StateType.FAILED: 1}, True)  # the end is not in it
        assert store.count_flow_runs_by_state(ws, T0 + timedelta(minutes=1), T0 + timedelta(hours=2)) == (
            {StateType.SCHEDULED: 1, StateType.COMPLETED: 2, StateType.FAILED: 1}, True)
        counts, complete = store.count_flow_runs_by_state(ws, T0, T0 + timedelta(hours=2), at_most=3)
        assert sum(counts.values()) == 3 and not complete
        assert store.count_flow_runs_by_state("another-workspace", T0, T0 + timedelta(hours=2)) == ({}, True)

    # ------------------------------------------------------------------ tenancy
    def test_workspace_by_id_or_name_and_unique_names(self, contract_store):
        ws = contract_store.create_workspace(Workspace(name="alpha", created=T0))
        assert contract_store.get_workspace(ws.id) == ws
        assert contract_store.get_workspace("alpha") == ws
        assert contract_store.get_workspace("nope") is None
        with pytest.raises(AlreadyExists):
            contract_store.create_workspace(Workspace(name="alpha", created=T0))

    def test_a_workspace_id_wins_over_a_name_spelled_like_it(self, contract_store):
        target = Workspace(name="beta", created=T0)
        squatter = contract_store.create_workspace(Workspace(name=target.id, created=T0))  # names may look like ids
        contract_store.create_workspace(target)
        assert contract_store.get_workspace(target.id) == target
        assert contract_store.get_workspace(squatter.id) == squatter

    def test_api_keys_by_hash_and_revocation(self, contract_store):
        actor = contract_store.create_actor(Actor(kind=ActorKind.USER, name="u", created=T0))
        key = contract_store.create_api_key(ApiKey(actor_id=actor.id, name="k", key_hash="h1", prefix="ppu_x",
                                                   created=T0))
        assert contract_store.get_api_key_by_hash("h1") == key
        assert contract_store.get_api_key_by_hash("h2") is None
        contract_store.update_api_key(key.model_copy(update={"revoked_at": T0}))
        assert contract_store.get_api_key_by_hash("h1").revoked_at == T0
        assert [k.id for k in contract_store.list_api_keys(actor.id)] == [key.id]

    def test_memberships_and_service_accounts(self, world):
        store = world.store
        sa = store.create_actor(Actor(kind=ActorKind.SERVICE_ACCOUNT, name="bot", workspace_id=world.ws.id,
                                      created=T0))
        store.set_membership(Membership(workspace_id=world.ws.id, actor_id=sa.id, role=Role.RUNNER))
        store.set_membership(Membership(workspace_id=world.ws.id, actor_id=sa.id, role=Role.VIEWER))
        assert store.get_membership(world.ws.id, sa.id).role is Role.VIEWER
        assert [a.id for a in store.list_service_accounts(world.ws.id)] == [sa.id]
        store.delete_actor(sa.id)
        assert store.get_actor(sa.id) is None
        assert store.get_membership(world.ws.id, sa.id) is None

    def test_members_of_a_workspace_and_users_of_the_instance(self, world):
        store = world.store
        other = store.create_workspace(Workspace(name="other", created=T0))
        ann = store.create_actor(Actor(kind=ActorKind.USER, name="ann", created=T0))
        bob = store.create_actor(Actor(kind=ActorKind.USER, name="bob", created=T0))
        bot = store.create_actor(Actor(kind=ActorKind.SERVICE_ACCOUNT, name="bot", workspace_id=world.ws.id,
                                       created=T0))
        for actor, role in ((ann, Role.OWNER), (bob, Role.VIEWER), (bot, Role.RUNNER)):
            store.set_membership(Membership(workspace_id=world.ws.id, actor_id=actor.id, role=role))
        store.set_membership(Membership(workspace_id=other.id, actor_id=bob.id, role=Role.OWNER))
        assert sorted((m.actor_id, m.role) for m in store.list_members(world.ws.id)) == sorted(
            [(ann.id, Role.OWNER), (bob.id, Role.VIEWER), (bot.id, Role.RUNNER)])
        assert [(m.actor_id, m.role) for m in store.list_members(other.id)] == [(bob.id, Role.OWNER)]
        assert sorted(u.name for u in store.list_users()) == ["ann", "bob"]  # not the service account

        store.delete_membership(world.ws.id, bob.id)
        assert store.get_membership(world.ws.id, bob.id) is None
        assert sorted(m.actor_id for m in store.list_members(world.ws.id)) == sorted([ann.id, bot.id])
        assert store.get_membership(other.id, bob.id).role is Role.OWNER  # only that workspace
        store.delete_actor(ann.id)
        assert [m.actor_id for m in store.list_members(world.ws.id)] == [bot.id]
        assert [u.name for u in store.list_users()] == ["bob"]

    # ------------------------------------------------------------------ catalog
    def test_pool_comes_with_its_default_queue_and_is_workspace_scoped(self, world):
        pool, queue = world.pool()
        store = world.store
        assert store.get_work_pool(world.ws.id, "pool") == pool
        assert store.get_work_pool("other-workspace", "pool") is None
        assert store.get_work_pool_by_id("other-workspace", pool.id) is None
        assert [q.name for q in store.list_work_queues(world.ws.id, pool.id)] == ["default"]
        with pytest.raises(AlreadyExists):
            world.pool()
        assert len(store.list_work_queues(world.ws.id, pool.id)) == 1

    def test_deleting_a_pool_removes_queues_and_unstarted_runs(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        run = world.run(dep)
        world.store.delete_work_pool(world.ws.id, pool.id)
        assert world.store.get_work_pool(world.ws.id, "pool") is None
        assert world.store.list_work_queues(world.ws.id, pool.id) == []
        assert world.store.get_flow_run(None, run.id) is None

    def test_deployments_by_name_and_scheduled_listing(self, world):
        pool, queue = world.pool()
        plain = world.deployment(pool, queue, "plain")
        scheduled = world.deployment(pool, queue, "sched", schedules=[Schedule(cron="* * * * *")])
        world.deployment(pool, queue, "paused", schedules=[Schedule(cron="* * * * *")], paused=True)
        assert world.store.get_deployment_by_name(world.ws.id, "flow", "plain") == plain
        assert [d.id for d in world.store.list_scheduled_deployments()] == [scheduled.id]
        with pytest.raises(AlreadyExists):
            world.deployment(pool, queue, "plain")


    def test_deployment_summaries_by_flow_and_name(self, world):
        pool, queue = world.pool()
        other_pool, other_queue = world.pool("other")
        world.deployment(pool, queue, "zeta", schedules=[Schedule(cron="* * * * *"),
                                                         Schedule(cron="0 * * * *", active=False)])
        alpha = world.deployment(other_pool, other_queue, "alpha", paused=True,
                                 schedules=[Schedule(cron="* * * * *"), Schedule(interval_seconds=60)])
        summaries = world.store.list_deployment_summaries(world.ws.id)
        assert [(s.full_name, s.paused, s.active_schedules) for s in summaries] == [
            ("flow/alpha", True, 2), ("flow/zeta", False, 1)]
        assert (summaries[0].id, summaries[0].pool_id) == (alpha.id, other_pool.id)
        assert world.store.list_deployment_summaries("another-workspace") == []
    # ------------------------------------------------------------------ runs
    def test_idempotent_bulk_insert(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)

        def make(key: str) -> FlowRun:
            return FlowRun(workspace_id=world.ws.id, deployment_id=dep.id, flow_name="flow", deployment_name="dep",
                           name="r", pool_id=pool.id, queue_id=queue.id, state=state(StateType.SCHEDULED),
                           scheduled_time=T0, auto_scheduled=True, idempotency_key=key, created=T0, updated=T0)

        assert world.store.create_flow_runs_if_absent([make("a"), make("b")]) == 2
        assert world.store.create_flow_runs_if_absent([make("a"), make("b"), make("c")]) == 1
        with pytest.raises(AlreadyExists):
            world.store.create_flow_run(make("c"))
        assert len(world.store.list_flow_runs(world.ws.id, FlowRunFilter())) == 3

    def test_conditional_state_change_and_history(self, world):
        pool, queue = world.pool()
        run = world.run(world.deployment(pool, queue))
        store = world.store
        assert store.set_flow_run_state(run.id, state(StateType.RUNNING), expect={StateType.PENDING}) is None
        assert [s.type for s in store.get_state_history(run.id)] == [StateType.SCHEDULED]
        pending = store.set_flow_run_state(run.id, state(StateType.PENDING), expect={StateType.SCHEDULED})
        running = store.set_flow_run_state(run.id, state(StateType.RUNNING, T0 + timedelta(seconds=5)))
        assert pending.state.type is StateType.PENDING
        assert running.start_time == T0 + timedelta(seconds=5)
        done = store.set_flow_run_state(run.id, state(StateType.COMPLETED, T0 + timedelta(seconds=9)),
                                        changes={"console_url": "x"})
        assert done.end_time == T0 + timedelta(seconds=9) and done.console_url == "x"
        assert [s.type for s in store.get_state_history(run.id)] == [
            StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]

    def test_update_with_expectations(self, world):
        pool, queue = world.pool()
        run = world.run(world.deployment(pool, queue))
        store = world.store
        assert store.update_flow_run(run.id, {"infra_id": "i-1"}, expect={"infra_id": "other"}) is None
        assert store.update_flow_run(run.id, {"infra_id": "i-1"}, expect={"infra_id": None}).infra_id == "i-1"
        assert store.update_flow_run(run.id, {"infra_id": "i-2"},
                                     expect={"state_type": StateType.PENDING}) is None

    def test_list_filters(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        other = world.deployment(pool, queue, "other")
        early = world.run(dep, T0)
        late = world.run(dep, T0 + timedelta(hours=1))
        world.run(other, T0)
        store = world.store
        by_dep = store.list_flow_runs(world.ws.id, FlowRunFilter(deployment_id=dep.id, sort="scheduled_asc"))
        assert [r.id for r in by_dep] == [early.id, late.id]
        before = store.list_flow_runs(world.ws.id, FlowRunFilter(deployment_id=dep.id,
                                                                 scheduled_before=T0 + timedelta(minutes=1)))
        assert [r.id for r in before] == [early.id]
        assert store.list_flow_runs("another-ws", FlowRunFilter()) == []
        assert len(store.list_flow_runs(world.ws.id, FlowRunFilter(), limit=2, offset=2)) == 1

    def test_cursor_pages_visit_every_selected_run_once_in_order(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        made = []
        for i in range(7):  # two pairs share a scheduled time: the id breaks the tie
            run = world.run(dep, T0 + timedelta(minutes=i // 2), tags=["etl", "daily"] if i % 3 else ["etl"],
                            flow_name="other" if i == 5 else "flow")
            made.append(run)
        world.run(world.deployment(pool, queue, "elsewhere"), T0, tags=["etl", "daily"])  # another deployment
        store = world.store

        def walk(**filters) -> list[str]:
            seen, cursor = [], None
            for _ in range(20):
                page, cursor = store.page_flow_runs(world.ws.id, FlowRunFilter(after=cursor, **filters), limit=2)
                assert len(page) <= 2
                seen += [run.id for run in page]
                if cursor is None:
                    return seen
            raise AssertionError("the pages never ended")

        def in_order(runs, reverse):
            return [r.id for r in sorted(runs, key=lambda r: (r.scheduled_time, r.id), reverse=reverse)]

        assert walk(deployment_id=dep.id) == in_order(made, reverse=True)
        assert walk(deployment_id=dep.id, sort="scheduled_asc") == in_order(made, reverse=False)
        daily = [r for r in made if "daily" in r.tags]
        assert walk(deployment_id=dep.id, tags=["daily", "etl"]) == in_order(daily, reverse=True)
        assert walk(flow_name="other") == [made[5].id]
        assert walk(flow_name="flow", tags=["daily"], sort="scheduled_asc", deployment_id=dep.id) == in_order(
            [r for r in daily if r.flow_name == "flow"], reverse=False)
        assert walk(tags=["nightly"]) == []
        assert store.page_flow_runs("another-ws", FlowRunFilter(), limit=2) == ([], None)
        # The cursor filters like the offset did: the list and the pages agree.
        listed = store.list_flow_runs(world.ws.id, FlowRunFilter(tags=["daily"]))
        assert [r.id for r in listed] == walk(tags=["daily"])

        # A run scheduled again (a retry) moves to its new place in its tags' order; a deleted run leaves them;
        # states and tags together, one state or several.
        store.update_flow_run(made[1].id, {"scheduled_time": T0 + timedelta(hours=1)})
        store.set_flow_run_state(made[2].id, state(StateType.FAILED))
        store.set_flow_run_state(made[4].id, state(StateType.CRASHED))
        store.set_flow_run_state(made[6].id, state(StateType.CANCELLED))
        assert store.delete_flow_run(world.ws.id, made[6].id, expect=StateType.CANCELLED)
        now = [store.get_flow_run(world.ws.id, r.id) for r in made[:6]]
        assert walk(deployment_id=dep.id, tags=["etl"]) == in_order(now, reverse=True)
        assert walk(deployment_id=dep.id, tags=["etl"])[0] == made[1].id
        assert walk(tags=["daily"], states=[StateType.FAILED, StateType.CRASHED]) == in_order(
            [now[2], now[4]], reverse=True)
        assert walk(tags=["etl", "daily"], states=[StateType.SCHEDULED], sort="scheduled_asc",
                    deployment_id=dep.id) == in_order([now[1], now[5]], reverse=False)

    def test_delete_future_auto_runs_only(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        past = world.run(dep, T0 - timedelta(minutes=1), auto_scheduled=True, idempotency_key="p")
        future = world.run(dep, T0 + timedelta(minutes=1), auto_scheduled=True, idempotency_key="f")
        manual = world.run(dep, T0 + timedelta(minutes=1))
        assert world.store.delete_scheduled_auto_runs(dep.id, T0) == 1
        assert world.store.get_flow_run(None, future.id) is None
        assert world.store.get_flow_run(None, past.id) and world.store.get_flow_run(None, manual.id)
        assert world.store.latest_auto_scheduled_time(dep.id, T0 - timedelta(minutes=5)) == (1, past.scheduled_time)
        assert world.store.latest_auto_scheduled_time(dep.id, T0) == (0, past.scheduled_time)

    def test_delete_a_run_only_in_the_state_it_was_read_in(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        done, waiting = world.run(dep, idempotency_key="k1"), world.run(dep)
        store = world.store
        store.set_flow_run_state(done.id, state(StateType.FAILED))
        store.set_run_token(done.id, "hash", LEASE)
        assert not store.delete_flow_run(world.ws.id, done.id, expect=StateType.COMPLETED)
        assert not store.delete_flow_run("other-workspace", done.id, expect=StateType.FAILED)
        assert store.get_flow_run(None, done.id) is not None
        assert store.delete_flow_run(world.ws.id, done.id, expect=StateType.FAILED)
        assert store.get_flow_run(None, done.id) is None and store.get_state_history(done.id) == []
        assert store.get_run_token(done.id) is None
        assert not store.delete_flow_run(world.ws.id, done.id, expect=StateType.FAILED)  # already gone
        world.run(dep, idempotency_key="k1")  # its idempotency key is free again
        with pytest.raises(ValueError):
            store.delete_flow_run(world.ws.id, waiting.id, expect=StateType.RUNNING)
        assert store.delete_flow_run(world.ws.id, waiting.id, expect=StateType.SCHEDULED)

    def test_run_tokens(self, world):
        pool, queue = world.pool()
        run = world.run(world.deployment(pool, queue))
        assert world.store.get_run_token(run.id) is None
        world.store.set_run_token(run.id, "hash", T0 + timedelta(hours=1))
        assert world.store.get_run_token(run.id) == ("hash", T0 + timedelta(hours=1))

    def test_runs_to_reconcile(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        active = world.run(dep)
        done = world.run(dep)
        unsubmitted = world.run(dep)
        store = world.store
        for run in (active, done):
            store.set_flow_run_state(run.id, state(StateType.PENDING), changes={"infra_id": f"i-{run.id}"})
        store.set_flow_run_state(done.id, state(StateType.CRASHED))
        assert {r.id for r in store.list_runs_to_reconcile(10)} == {active.id, done.id}
        store.update_flow_run(done.id, {"cleaned_up": True})
        assert [r.id for r in store.list_runs_to_reconcile(10)] == [active.id]
        assert unsubmitted.id not in {r.id for r in store.list_overdue_scheduled_runs(T0, 10)}
        assert [r.id for r in store.list_overdue_scheduled_runs(T0 + timedelta(seconds=1), 10)] == [unsubmitted.id]
        later = world.run(dep, T0 + timedelta(seconds=30))
        # since: only what became overdue after an earlier read (its lower bound included)
        assert [r.id for r in store.list_overdue_scheduled_runs(T0 + timedelta(minutes=1), 10,
                                                                 since=T0 + timedelta(seconds=30))] == [later.id]
        assert store.list_overdue_scheduled_runs(T0 + timedelta(minutes=1), 10, since=T0 + timedelta(seconds=31)) == []

    # ------------------------------------------------------------------ meta
    def test_meta_values(self, contract_store):
        assert contract_store.get_meta("last_tick") is None
        contract_store.set_meta("last_tick", "a")
        contract_store.set_meta("last_tick", "b")
        assert contract_store.get_meta("last_tick") == "b"
        assert contract_store.set_meta_once("secret", "first") == "first"
        assert contract_store.set_meta_once("secret", "second") == "first"

    def test_earliest_scheduled_time_in_a_window(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        world.run(dep, T0)
        world.run(dep, T0 + timedelta(seconds=40))
        world.run(dep, T0 + timedelta(seconds=20))
        store = world.store
        assert store.earliest_scheduled_time(pool.id, T0, T0 + timedelta(minutes=1)) == T0 + timedelta(seconds=20)
        assert store.earliest_scheduled_time(pool.id, T0 - timedelta(seconds=1), T0) == T0
        assert store.earliest_scheduled_time(pool.id, T0 + timedelta(seconds=40), T0 + timedelta(hours=1)) is None

    def test_due_runs_are_counted_per_pool_up_to_a_bound(self, world):
        pool, queue = world.pool()
        other, other_queue = world.pool("other")
        dep, elsewhere = world.deployment(pool, queue), world.deployment(other, other_queue, "elsewhere")
        for seconds in (-30, -20, -10, 0, 60):
            world.run(dep, T0 + timedelta(seconds=seconds))
        world.run(elsewhere, T0)
        started = world.run(dep, T0 - timedelta(minutes=5))
        world.store.set_flow_run_state(started.id, state(StateType.RUNNING))  # not waiting any more
        store = world.store
        assert store.count_due_runs(pool.id, T0) == 4
        assert store.count_due_runs(pool.id, T0, at_most=2) == 2
        assert store.count_due_runs(other.id, T0 - timedelta(seconds=1)) == 0
