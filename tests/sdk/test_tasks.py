"""``@task``: calling, submit and futures, map, retries, timeouts, caching, async, and each run's record."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from pushpool import INPUTS, TASK_SOURCE, ThreadPoolTaskRunner, exponential_backoff, flow, task, unmapped
from pushpool.context import FlowRunContext
from pushpool.control_plane.models import new_id
from pushpool.tasks import TaskTimeout


class Recorder:
    """What the runner's reporter would receive: every version of every task run's record."""

    def __init__(self) -> None:
        self.versions: list[dict] = []
        self.lock = threading.Lock()

    def record(self, task_run: dict) -> None:
        with self.lock:
            self.versions.append(task_run)

    def final(self) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for version in self.versions:
            latest[version["name"]] = version
        return latest


def run_flow(flow_obj, *args, **kwargs):
    """Call a flow as the runner does: with a context whose recorder keeps every record."""
    recorder = Recorder()
    with flow_obj.run_context(FlowRunContext(flow_run_id=new_id(), recorder=recorder)):
        result = flow_obj.fn(*args, **kwargs)
    return result, recorder


@task
def add(x: int, y: int = 0) -> int:
    return x + y


def test_calling_a_task_runs_it_and_records_it():
    @flow
    def pipeline():
        return add(1, 2)

    result, recorder = run_flow(pipeline)
    assert result == 3
    [record] = recorder.final().values()
    assert (record["name"], record["state_type"], record["attempts"], record["cache_hit"]) == ("add-0", "COMPLETED",
                                                                                                1, False)
    assert record["flow_run_id"] and record["start_time"] <= record["end_time"]
    assert [v["state_type"] for v in recorder.versions] == ["RUNNING", "COMPLETED"]
    assert add(2, 3) == 5 and pipeline() == 3  # outside a run: plain calls, nothing recorded


def test_submit_map_unmapped_and_futures_as_arguments():
    @flow
    def pipeline():
        first = add.submit(1, 2)
        mapped = add.map([1, 2, 3], y=unmapped(10))
        nested = add.submit(first, y=sum([f.result() for f in mapped]))
        assert first.result() == 3 and first.state == "COMPLETED"
        return nested.result(), [f.result() for f in add.map([first, 5], [1, 1])]

    (total, pairs), recorder = run_flow(pipeline)
    assert total == 3 + 11 + 12 + 13 and pairs == [4, 6]
    assert sorted(recorder.final()) == [f"add-{i}" for i in range(7)]


def test_map_needs_equal_lengths_and_something_to_map():
    with pytest.raises(ValueError, match=r"different lengths \(\[2, 3\]\)"):
        add.map([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no iterable argument"):
        add.map(1, unmapped([1, 2]))


def test_a_flow_waits_for_what_it_submitted_and_wait_for_orders_runs():
    order: list[str] = []

    @task
    def slow(label: str) -> None:
        time.sleep(0.2)
        order.append(label)

    @task
    def after(label: str) -> None:
        order.append(label)

    @flow
    def pipeline():
        first = slow.submit("slow")
        after.submit("after", wait_for=[first])
        slow.submit("unwaited")

    run_flow(pipeline)
    assert set(order) == {"slow", "after", "unwaited"}  # all done when the flow returned
    assert order.index("after") > order.index("slow")


def test_the_thread_pool_bounds_concurrency():
    running, peak, lock = [0], [0], threading.Lock()

    @task
    def busy(_: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def pipeline():
        for future in busy.map(range(8)):
            future.wait()

    run_flow(pipeline)
    assert peak[0] == 2


def test_retries_with_delays_are_visible_in_the_record():
    calls: list[float] = []

    @task(retries=2, retry_delay_seconds=[0.05, 0.1])
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    @flow
    def pipeline():
        return flaky()

    result, recorder = run_flow(pipeline)
    assert result == "ok" and len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1
    names = [v["state_name"] for v in recorder.versions]
    assert names == ["Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed"]
    final = recorder.final()["flaky-0"]
    assert final["attempts"] == 3 and final["error"] is None


def test_a_task_that_keeps_failing_fails_its_caller_with_the_error():
    @task(retries=1)
    def broken() -> None:
        raise ValueError("bad input")

    @flow
    def pipeline():
        future = broken.submit()
        assert isinstance(future.result(raise_on_failure=False), ValueError)
        assert future.state == "FAILED"
        broken()

    with pytest.raises(ValueError, match="bad input"):
        run_flow(pipeline)


def test_backoff_delays_and_jitter():
    from pushpool.tasks import Task

    assert exponential_backoff(10)(4) == [10, 20, 40, 80]
    jittery = Task(lambda: None, retries=3, retry_delay_seconds=exponential_backoff(1), retry_jitter_factor=0.5)
    from pushpool.tasks import TaskRun

    run = TaskRun(jittery, (), {}, None)
    for attempt, base in ((1, 1), (2, 2), (3, 4)):
        delays = {run._delay(attempt) for _ in range(50)}
        assert all(base * 0.5 <= d <= base * 1.5 for d in delays) and len(delays) > 1


def test_a_sync_and_an_async_task_time_out():
    @task(timeout_seconds=0.1)
    def sleepy() -> None:
        time.sleep(2)

    @task(timeout_seconds=0.1)
    async def sleepy_async() -> None:
        await asyncio.sleep(2)

    @flow
    def pipeline():
        started = time.monotonic()
        with pytest.raises(TaskTimeout, match="exceeded its timeout of 0.1s"):
            sleepy()
        with pytest.raises(TaskTimeout):
            asyncio.run(sleepy_async())
        return time.monotonic() - started

    elapsed, recorder = run_flow(pipeline)
    assert elapsed < 1.5
    assert {r["state_name"] for r in recorder.final().values()} == {"TimedOut"}


def test_async_tasks_in_an_async_flow():
    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    @flow
    async def pipeline() -> list[int]:
        awaited = await double(1)
        submitted = double.submit(2)
        return [awaited, submitted.result(), *[f.result() for f in double.map([3, 4])]]

    assert asyncio.run(pipeline()) == [2, 4, 6, 8]


def cached_pipeline(location: str | None, calls: list[int], **options: Any):
    """A flow calling one task cached by its inputs in ``location``; ``calls`` records the real calls."""
    @task(cache_policy=INPUTS, result_storage=location, **options)
    def expensive(x: int) -> int:
        calls.append(x)
        return x * 10

    @flow
    def pipeline(x: int):
        return expensive(x)

    return pipeline


def test_caching_by_inputs_in_the_process_and_in_a_directory(tmp_path):
    calls: list[int] = []
    pipeline = cached_pipeline(str(tmp_path / "results"), calls)
    first, _ = run_flow(pipeline, 1)
    second, recorder = run_flow(pipeline, 1)  # another run, the same directory: a cache hit
    assert first == second == 10 and calls == [1]
    assert recorder.final()["expensive-0"]["cache_hit"] and recorder.final()["expensive-0"]["state_name"] == "Cached"
    run_flow(pipeline, 2)
    assert calls == [1, 2]
    assert len(list((tmp_path / "results").glob("*.pickle"))) == 2


def test_cache_expiration_and_cache_key_fn():
    calls: list[str] = []

    @task(cache_key_fn=lambda context, parameters: parameters["day"], cache_expiration=timedelta(seconds=0.2))
    def load(day: str, verbose: bool = False) -> str:
        calls.append(day)
        return day.upper()

    assert [load("mon"), load("mon", verbose=True), load("tue")] == ["MON", "MON", "TUE"]
    assert calls == ["mon", "tue"]  # the key ignores 'verbose'
    time.sleep(0.25)
    load("mon")
    assert calls == ["mon", "tue", "mon"]


def test_task_source_is_part_of_the_key_and_uncacheable_inputs_do_not_cache():
    @task(cache_policy=INPUTS + TASK_SOURCE)
    def one(lock) -> int:
        return 1

    @task(cache_policy=INPUTS + TASK_SOURCE)
    def two(lock) -> int:
        return 2

    lock = threading.Lock()  # neither JSON nor picklable: the call is not cached, and still runs
    assert (one(lock), two(lock), one(lock)) == (1, 2, 1)


def test_unknown_result_storage_is_a_clear_error():
    @task(cache_policy=INPUTS, result_storage="hdfs://cluster/prefix")
    def cached() -> int:
        return 1

    with pytest.raises(ValueError, match="result_storage: hdfs:// is not supported; use s3://, gs:// or az://"):
        cached()
