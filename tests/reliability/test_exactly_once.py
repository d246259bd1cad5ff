"""Exactly once: many runs due together, several dispatchers on one store, a pusher that fails.

Every run ends with exactly one successful submission, or CRASHED with the
permanent error (or after the transient retries ran out); none is submitted twice
and none is left SCHEDULED or PENDING without infrastructure. ``make test-slow``
runs it at the issue's size (5,000 runs); the default run uses 400.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from pushpool.control_plane.app import build_context
from pushpool.control_plane.clock import SystemClock
from pushpool.control_plane.models import FlowRunFilter, StateType
from pushpool.control_plane.services.dispatcher import Dispatcher
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.sqlite import SqliteStore
from pushpool.pushers.base import PusherContext, PusherRegistry
from tests.fakes.faulty_pusher import FaultyPusher, submissions

RUNS = int(os.environ.get("PUSHPOOL_EXACTLY_ONCE_RUNS", "400"))


def make_runs(api, clock, count: int) -> None:
    api.pool(concurrency_limit=None)
    dep = api.deployment()
    for i in range(count):
        when = clock.now() + timedelta(seconds=(i * 60) / count)  # all due within a minute
        api.run(dep["id"], scheduled_time=when.isoformat())


def check_outcome(store, workspace_id: str, log: Path, count: int) -> Counter:
    runs = store.list_flow_runs(workspace_id, FlowRunFilter(), limit=count + 10)
    assert len(runs) == count
    submitted = Counter(submissions(log))
    assert max(submitted.values(), default=0) == 1, f"submitted twice: {[r for r, n in submitted.items() if n > 1]}"
    outcomes: Counter = Counter()
    for run in runs:
        if run.id in submitted:
            assert run.state.type is StateType.PENDING and run.infra_id == f"task-{run.id}", run
            outcomes["submitted"] += 1
        else:
            assert run.state.type is StateType.CRASHED, run
            assert ("invalid image (injected)" in run.state.message
                    or "Gave up after" in run.state.message), run.state.message
            outcomes["crashed"] += 1
    return outcomes


@pytest.mark.timeout(600)
def test_threads(api, ctx, clock, tmp_path):
    make_runs(api, clock, RUNS)
    log = tmp_path / "submissions.log"
    dispatchers = []
    for seed in range(4):
        registry = PusherRegistry(PusherContext(state_dir=tmp_path, api_url="http://x"),
                                  overrides={"fake:push": FaultyPusher(log, seed=seed)})
        dispatchers.append(Dispatcher(replace(ctx, store=SqliteStore(ctx.store.path), pushers=registry)))
    for _ in range(40):  # ticks; the clock moves so backoffs and the due times pass
        threads = [threading.Thread(target=d.run_once) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clock.advance(10)
    for d in dispatchers:
        d.close()
    workspace = ctx.store.get_workspace("default")
    outcomes = check_outcome(ctx.store, workspace.id, log, RUNS)
    assert outcomes["submitted"] > RUNS * 0.9


def _work_left(store, workspace_id: str) -> bool:
    waiting = store.list_flow_runs(workspace_id, FlowRunFilter(states=[StateType.SCHEDULED, StateType.PENDING]),
                                   limit=100_000)
    return any(r.state.type is StateType.SCHEDULED or r.infra_id is None for r in waiting)


def _dispatch_process(db: str, home: str, key: str, log: str, seed: int, workspace_id: str) -> None:
    """Dispatch until no run is waiting for a submission (bounded to two minutes)."""
    settings = Settings(home=Path(home), encryption_key=key, submission_backoff_seconds=0.02,
                        submission_backoff_max_seconds=0.1, dispatch_batch_size=50)
    registry = PusherRegistry(PusherContext(state_dir=Path(home), api_url="http://x"),
                              overrides={"fake:push": FaultyPusher(Path(log), seed=seed)})
    ctx = build_context(settings, SqliteStore(db), SystemClock(), registry)
    dispatcher = Dispatcher(ctx)
    deadline = time.monotonic() + 120
    while _work_left(ctx.store, workspace_id) and time.monotonic() < deadline:
        dispatcher.run_once()
        time.sleep(0.01)
    dispatcher.close()


@pytest.mark.timeout(600)
def test_separate_processes(api, ctx, settings, tmp_path):
    count = max(100, RUNS // 2)
    # Due now in real time: the processes use the system clock.
    api.pool()
    dep = api.deployment()
    for _ in range(count):
        api.run(dep["id"], scheduled_time="2020-01-01T00:00:00+00:00")
    log = tmp_path / "submissions.log"
    workspace = ctx.store.get_workspace("default")
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_dispatch_process, args=(ctx.store.path, str(settings.home),
                                                               settings.encryption_key, str(log), seed, workspace.id))
                 for seed in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
        assert p.exitcode == 0
    check_outcome(ctx.store, workspace.id, log, count)
