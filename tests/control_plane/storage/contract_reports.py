"""The Store contract for what runs report and workspaces keep beside them: task runs, log chunks, child runs,
variables and tag concurrency limits. Every backend's test class mixes it in with :class:`StoreContract`."""

from __future__ import annotations

import base64
import os
from datetime import timedelta

from pushpool.control_plane.api.schemas import MAX_LOG_BYTES_PER_REPORT, MAX_LOG_ITEMS_PER_REPORT
from pushpool.control_plane.models import (
    ConcurrencyLimit,
    FlowRun,
    LogChunk,
    LogLine,
    LogText,
    StateType,
    TaskRun,
    Variable,
    Workspace,
)
from tests.control_plane.storage.contract import T0, state


class ReportsContract:
    def test_variables_by_workspace_and_name(self, world):
        store = world.store
        other = store.create_workspace(Workspace(name="other", created=T0))
        store.put_variable(Variable(workspace_id=world.ws.id, name="region", value="eu", created=T0, updated=T0))
        store.put_variable(Variable(workspace_id=world.ws.id, name="limits", value={"rows": 5}, tags=["etl"],
                                    created=T0, updated=T0))
        store.put_variable(Variable(workspace_id=other.id, name="region", value="us", created=T0, updated=T0))
        store.put_variable(Variable(workspace_id=world.ws.id, name="region", value="ap", created=T0, updated=T0))
        assert store.get_variable(world.ws.id, "region").value == "ap"
        assert store.get_variable(other.id, "region").value == "us"
        assert [v.name for v in store.list_variables(world.ws.id)] == ["limits", "region"]
        assert store.count_variables(world.ws.id) == 2
        assert store.delete_variable(world.ws.id, "region") and not store.delete_variable(world.ws.id, "region")
        assert store.get_variable(world.ws.id, "region") is None and store.get_variable(other.id, "region")

    def test_tag_limits_are_written_only_from_the_version_read(self, world):
        store = world.store
        new = ConcurrencyLimit(workspace_id=world.ws.id, tag="db", limit=2, created=T0, updated=T0)
        api = ConcurrencyLimit(workspace_id=world.ws.id, tag="api", limit=1, created=T0, updated=T0)
        assert store.save_concurrency_limits([new, api])
        assert not store.save_concurrency_limits([new])  # created meanwhile: version 0 is gone
        db = store.get_concurrency_limit(world.ws.id, "db")
        assert db.version == 1 and [c.tag for c in store.list_concurrency_limits(world.ws.id)] == ["api", "db"]
        held = db.model_copy(update={"holders": {"t1": 100.0}})
        assert store.save_concurrency_limits([held, store.get_concurrency_limit(world.ws.id, "api")])
        assert not store.save_concurrency_limits([held])  # stale: version 1 was written over
        assert store.get_concurrency_limit(world.ws.id, "db").holders == {"t1": 100.0}
        stale_api = api  # version 0, but api is at 2 now: the pair fails together, db untouched
        fresh_db = store.get_concurrency_limit(world.ws.id, "db")
        assert not store.save_concurrency_limits([fresh_db.model_copy(update={"holders": {}}), stale_api])
        assert store.get_concurrency_limit(world.ws.id, "db").holders == {"t1": 100.0}
        assert store.delete_concurrency_limit(world.ws.id, "db")
        assert store.get_concurrency_limit(world.ws.id, "db") is None

    def test_task_runs_are_kept_with_their_flow_run_up_to_a_cap(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        run, other = world.run(dep), world.run(dep)
        store = world.store

        def task_run(task_id: str, flow_run: FlowRun, state_type: StateType = StateType.RUNNING) -> TaskRun:
            return TaskRun(id=task_id, workspace_id=world.ws.id, flow_run_id=flow_run.id, name=f"t-{task_id}",
                           task_key="m.t", state_type=state_type, state_name=state_type.value.title(), updated=T0)

        assert store.save_task_runs(run.id, [task_run(f"{i:03d}", run) for i in range(5)], max_reports=8)
        assert store.save_task_runs(run.id, [task_run("002", run, StateType.COMPLETED)], max_reports=8)
        assert store.save_task_runs(other.id, [task_run("002", other)], max_reports=8)  # same id, another run
        listed = store.list_task_runs(run.id)
        assert [t.id for t in listed] == ["000", "001", "002", "003", "004"]
        assert listed[2].state_type is StateType.COMPLETED  # replaced, not added
        assert [t.id for t in store.list_task_runs(run.id, after="001", limit=2)] == ["002", "003"]
        assert [t.flow_run_id for t in store.list_task_runs(other.id)] == [other.id]
        # 6 reports so far: 3 more would pass the cap of 8, and nothing of that batch is written.
        assert not store.save_task_runs(run.id, [task_run(f"x{i}", run) for i in range(3)], max_reports=8)
        assert len(store.list_task_runs(run.id)) == 5
        assert store.save_task_runs(run.id, [task_run("x0", run), task_run("x1", run)], max_reports=8)

        store.set_flow_run_state(run.id, state(StateType.FAILED))
        assert store.delete_flow_run(world.ws.id, run.id, expect=StateType.FAILED)
        assert store.list_task_runs(run.id) == []
        assert len(store.list_task_runs(other.id)) == 1

    def test_log_chunks_in_order_up_to_a_cap_and_until_their_retention(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        run, other = world.run(dep), world.run(dep)
        store, keep = world.store, T0 + timedelta(days=30)

        def chunk(seq: int, flow_run: FlowRun = run, text: str = "line") -> LogChunk:
            return LogChunk(flow_run_id=flow_run.id, seq=seq, received=T0, lines=[
                LogLine(timestamp=T0, message=f"{text} {seq}.{i}") for i in range(2)])

        for seq in (0, 1, 2):
            assert store.append_log_chunk(chunk(seq), size=10, max_bytes=45, keep_until=keep)
        assert store.append_log_chunk(chunk(1, text="resent"), size=10, max_bytes=45, keep_until=keep)
        assert store.append_log_chunk(chunk(0, other), size=40, max_bytes=45, keep_until=T0)
        assert [c.seq for c in store.list_log_chunks(run.id)] == [0, 1, 2]
        assert store.list_log_chunks(run.id)[1].lines[0].message == "resent 1.0"  # a resent batch replaces
        assert [c.seq for c in store.list_log_chunks(run.id, after=0, limit=1)] == [1]
        assert [c.seq for c in store.list_log_chunks(run.id, newest_first=True, limit=2)] == [2, 1]
        assert not store.append_log_chunk(chunk(3), size=10, max_bytes=45, keep_until=keep)  # 40 + 10 > 45
        assert store.append_log_chunk(chunk(3), size=5, max_bytes=45, keep_until=keep)
        assert [c.seq for c in store.list_log_chunks(run.id)] == [0, 1, 2, 3]

        deleted = store.delete_expired_log_chunks(T0 + timedelta(days=1))
        assert deleted in (0, 1)  # DynamoDB leaves it to its TTL (the item carries the time)
        if deleted:
            assert store.list_log_chunks(other.id) == []
        store.set_flow_run_state(run.id, state(StateType.COMPLETED))
        assert store.delete_flow_run(world.ws.id, run.id, expect=StateType.COMPLETED)
        assert store.list_log_chunks(run.id) == []

    def test_the_largest_batch_the_api_takes_is_kept_whole(self, world):
        """5,000 lines and 256 KiB of text (what one report may carry) fit one stored chunk: a DynamoDB item
        holds at most 400 KB."""
        pool, queue = world.pool()
        run = world.run(world.deployment(pool, queue))
        text = "x" * (MAX_LOG_BYTES_PER_REPORT // MAX_LOG_ITEMS_PER_REPORT)
        many = LogChunk(flow_run_id=run.id, seq=0, received=T0, lines=[
            LogLine(timestamp=T0 + timedelta(microseconds=i), message=text, stream="stdout", logger="a-flow-name",
                    task_run_id="0" * 32) for i in range(MAX_LOG_ITEMS_PER_REPORT)])
        wide = LogChunk(flow_run_id=run.id, seq=1, received=T0, lines=[
            LogLine(timestamp=T0, message=base64.b64encode(os.urandom(12_288)).decode())  # 16 KiB, hardly compressible
            for _ in range(MAX_LOG_BYTES_PER_REPORT // 16_384)])
        lines = [base64.b64encode(os.urandom(3 * n)).decode() for n in range(1, 400)]  # ~240 KiB of text
        captured = LogChunk(flow_run_id=run.id, seq=2, received=T0, lines=[
            LogText(stream="stderr", timestamp=T0, text="\n".join(lines))])
        for chunk in (many, wide, captured):
            assert world.store.append_log_chunk(chunk, size=1, max_bytes=10, keep_until=T0 + timedelta(days=1))
        assert world.store.list_log_chunks(run.id) == [many, wide, captured]
        assert list(world.store.list_log_chunks(run.id, after=1)[0].lines[0].lines()) == lines

    def test_child_runs_are_listed_by_their_parent(self, world):
        pool, queue = world.pool()
        dep = world.deployment(pool, queue)
        parent = world.run(dep)
        first = world.run(dep, parent_flow_run_id=parent.id, depth=1)
        second = world.run(dep, parent_flow_run_id=parent.id, depth=1)
        grandchild = world.run(dep, parent_flow_run_id=first.id, depth=2)
        store = world.store
        assert [r.id for r in store.list_child_runs(parent.id)] == [first.id, second.id]
        assert [r.id for r in store.list_child_runs(first.id)] == [grandchild.id]
        assert store.list_child_runs(second.id) == []
        assert [r.id for r in store.list_child_runs(parent.id, limit=1)] == [first.id]
        assert store.count_child_runs(parent.id) == 2 and store.count_child_runs(second.id) == 0
        assert store.delete_flow_run(world.ws.id, second.id, expect=StateType.SCHEDULED)
        assert [r.id for r in store.list_child_runs(parent.id)] == [first.id]
        assert store.count_child_runs(parent.id) == 1
