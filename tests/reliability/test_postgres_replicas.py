"""Many control-plane replicas on one PostgreSQL: each a separate process dispatching the same pool, a pusher
that fails 10 % of the time (transiently) and 1 % for good, then one replica SIGKILLed every few seconds.

Every run is submitted exactly once (or ends CRASHED with the injected permanent error or after its retries),
a pool's concurrency limit is never exceeded by the replicas together, and no run is left waiting. ``make
test-slow`` runs it with more runs (``PUSHPOOL_EXACTLY_ONCE_RUNS``).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from pushpool.control_plane.app import build_context
from pushpool.control_plane.clock import SystemClock
from pushpool.control_plane.models import FlowRunFilter, StateType
from pushpool.control_plane.services.dispatcher import Dispatcher
from pushpool.control_plane.settings import Settings
from pushpool.pushers.base import PusherContext, PusherRegistry
from tests.fakes.faulty_pusher import FaultyPusher, submissions
from tests.reliability.test_exactly_once import check_outcome

pytest.importorskip("psycopg")
from pushpool.control_plane.storage.postgres import PostgresStore  # noqa: E402

RUNS = int(os.environ.get("PUSHPOOL_EXACTLY_ONCE_RUNS", "400")) // 2
REPLICAS = 4


@pytest.fixture
def store(postgres_url):
    """The suite's API and services on PostgreSQL (replaces tests/conftest.py's SQLite store)."""
    s = PostgresStore(postgres_url)
    yield s
    s.close()


def _waiting(store: PostgresStore, workspace_id: str) -> list:
    runs = store.list_flow_runs(workspace_id, FlowRunFilter(states=[StateType.SCHEDULED, StateType.PENDING]),
                                limit=100_000)
    return [r for r in runs if r.state.type is StateType.SCHEDULED or r.infra_id is None]


def _replica(url: str, home: str, key: str, log: str, seed: int, workspace_id: str, seconds: float,
             until_done: bool, lease: int) -> None:
    """One control-plane replica's dispatch loop (what `pushpool server start --store URL` runs in its tick)."""
    settings = Settings(home=Path(home), encryption_key=key, store="postgresql", database_url=url,
                        submission_backoff_seconds=0.02, submission_backoff_max_seconds=0.1, dispatch_batch_size=20,
                        submission_lease_seconds=lease)
    registry = PusherRegistry(PusherContext(state_dir=Path(home), api_url="http://x"),
                              overrides={"fake:push": FaultyPusher(Path(log), seed=seed)})
    store = PostgresStore(url, pool_size=4)
    dispatcher = Dispatcher(build_context(settings, store, SystemClock(), registry))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (not until_done or _waiting(store, workspace_id)):
        dispatcher.run_once()
        time.sleep(0.01)
    dispatcher.close()
    store.close()


def _start(url: str, settings: Settings, log: Path, seed: int, workspace_id: str, seconds: float,
           until_done: bool, lease: int = 120) -> multiprocessing.Process:
    """A replica process; ``lease`` is how long a claim holds a run (the default's 120 s, or a short one where
    replicas are killed, so their runs are taken over within the test)."""
    process = multiprocessing.get_context("spawn").Process(
        target=_replica, args=(url, str(settings.home), settings.encryption_key, str(log), seed, workspace_id,
                               seconds, until_done, lease))
    process.start()
    return process


def _due_runs(api, count: int, limit: int | None) -> None:
    api.pool(concurrency_limit=limit)
    dep = api.deployment()
    for _ in range(count):
        api.run(dep["id"], scheduled_time="2020-01-01T00:00:00+00:00")  # due now for the replicas' real clocks


@pytest.mark.timeout(600)
def test_replicas_submit_each_run_once_and_never_exceed_a_limit_together(api, store, settings, tmp_path):
    limit = 25
    _due_runs(api, RUNS, limit)
    log, workspace = tmp_path / "submissions.log", store.get_workspace("default")
    replicas = [_start(store.url, settings, log, seed, workspace.id, 8, False) for seed in range(REPLICAS)]
    for process in replicas:
        process.join(timeout=300)
        assert process.exitcode == 0
    submitted = Counter(submissions(log))
    assert max(submitted.values()) == 1
    active = store.list_flow_runs(workspace.id, FlowRunFilter(states=[StateType.PENDING]), limit=RUNS)
    # the limit filled by four replicas, and not one run more (a run still waiting for its retry after a
    # transient fault holds its slot, submitted or not)
    assert len(active) == limit and set(submitted) <= {r.id for r in active} and len(submitted) >= limit - 5

    api.ok("PATCH", api.ws("/work_pools/pool"), json={"concurrency_limit": None})
    replicas = [_start(store.url, settings, log, seed + 10, workspace.id, 120, True) for seed in range(REPLICAS)]
    for process in replicas:
        process.join(timeout=300)
        assert process.exitcode == 0
    outcomes = check_outcome(store, workspace.id, log, RUNS)
    assert outcomes["submitted"] > RUNS * 0.9


@pytest.mark.timeout(600)
def test_a_replica_killed_every_few_seconds_loses_no_run(api, store, settings, tmp_path):
    _due_runs(api, RUNS, None)
    log, workspace = tmp_path / "submissions.log", store.get_workspace("default")
    replicas = [_start(store.url, settings, log, seed, workspace.id, 120, True, lease=3) for seed in range(REPLICAS)]
    pick, kills = random.Random(7), 0
    for round_ in range(5):
        time.sleep(2)
        victim = pick.randrange(REPLICAS)
        if replicas[victim].is_alive():
            os.kill(replicas[victim].pid, signal.SIGKILL)
            replicas[victim].join()
            kills += 1
        replicas[victim] = _start(store.url, settings, log, 100 + round_, workspace.id, 120, True, lease=3)
    for process in replicas:
        process.join(timeout=300)
        assert process.exitcode == 0
    assert kills >= 3
    assert _waiting(store, workspace.id) == []  # none lost: a killed replica's claims expired and were taken over
    submitted = Counter(submissions(log))
    for run in store.list_flow_runs(workspace.id, FlowRunFilter(), limit=RUNS + 10):
        if run.state.type is StateType.PENDING:
            assert run.infra_id == f"task-{run.id}" and submitted[run.id] >= 1
        else:
            assert run.state.type is StateType.CRASHED, run
    # A submission a replica made just before it was killed, and never recorded, is made again once its claim
    # expires (as is one that outlived the test's short 3 s claim on a busy machine); the pusher adopts it, as a
    # cloud does with the run's idempotency key: the same infrastructure, one per run (checked above).
    again = sum(n - 1 for n in submitted.values())
    assert again <= len(submitted) // 10, again
