"""Workloads that need something to start runs: Prefect's process worker (defaults), and pushpool's
own dispatcher with the local pusher, for dispatch lateness (4) and on-time start with slow
infrastructure (5)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.systems import PREFECT_VENV, PrefectApi, PrefectServer, PushpoolApi, PushpoolServer
from tests.benchmarks.workloads import Lateness, create_due_runs, due_at

PREFECT_FLOW = "from prefect import flow\n\n\n@flow\ndef bench():\n    return 1\n"
PUSHPOOL_FLOW = "from pushpool import flow\n\n\n@flow\ndef bench():\n    return 1\n"
#: What "infrastructure that takes 60 s to start" means here: the container's command sleeps first.
INFRA_START_SECONDS = 60


def _project(source: str) -> Path:
    project = Path(tempfile.mkdtemp(prefix="pushpool-bench-flow-"))
    (project / "flow.py").write_text(source)
    return project


def _prefect_deployment(api: PrefectApi, client: Any, project: Path, **fields: Any) -> str:
    api.create_pool(client, "proc")
    return api.create_deployment(
        client, "due", "proc", entrypoint="flow.py:bench", path=str(project),
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}], **fields)


def _start_worker(server: PrefectServer) -> subprocess.Popen:
    log = open(server.home / "worker.log", "w")  # noqa: SIM115 - the worker's lifetime
    return subprocess.Popen([str(PREFECT_VENV / "bin" / "prefect"), "worker", "start", "--pool", "proc",
                             "--type", "process"], env=server.env, cwd=server.home, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """Stop the worker and the flow processes it started (its own process group)."""
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _prefect_runs(api: PrefectApi, client: Any, ids: list[str]) -> list[dict]:
    answer = client.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}, "limit": len(ids)})
    answer.raise_for_status()
    return answer.json()


def _patiently(call: Any, seconds: float = 300) -> Any:
    """``call()`` again after a timeout or a dropped connection: a server busy with a hundred flow
    processes starting at once can leave a read unanswered for a minute. What is measured comes from
    the server's own state timestamps, so a late answer changes no figure."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def dispatch_lateness(count: int) -> Lateness:
    """Prefect: ``count`` runs due at the same second; a process worker with default settings picks them
    up. Lateness is each run's PENDING time (the worker taking it) after its scheduled time."""
    server = PrefectServer(services=True)
    worker = None
    try:
        api = PrefectApi(server)
        with api.client() as client:
            deployment = _prefect_deployment(api, client, _project(PREFECT_FLOW))
            worker = _start_worker(server)  # polling before the runs exist: their due time falls anywhere in its cycle
            time.sleep(15)
            at = due_at(30)
            ids = create_due_runs(api, deployment, count, at)
            deadline = at.timestamp() + 90
            while time.time() < deadline:
                runs = _patiently(lambda: _prefect_runs(api, client, ids))
                if all(r["state"]["type"] != "SCHEDULED" for r in runs):
                    break
                time.sleep(1)
            _stop(worker)  # what is measured is recorded; a server no longer busy with flows answers at once
            seen = []
            for run_id in ids:
                states = _patiently(lambda run_id=run_id: client.get(
                    "/flow_run_states/", params={"flow_run_id": run_id}).json())
                pending = [s for s in states if s["type"] == "PENDING"]
                if pending:
                    seen.append(min(_seconds(s["timestamp"]) for s in pending) - at.timestamp())
        return Lateness(count, seen)
    finally:
        if worker is not None:
            _stop(worker)
        server.stop()


def prefect_slow_start(count: int) -> Lateness:
    """Prefect: the process worker's command sleeps 60 s before the engine starts (a slow container)."""
    server = PrefectServer(services=True)
    worker = None
    try:
        api = PrefectApi(server)
        command = f"sh -c 'sleep {INFRA_START_SECONDS}; exec {PREFECT_VENV / 'bin' / 'python'} -m prefect.engine'"
        with api.client() as client:
            deployment = _prefect_deployment(api, client, _project(PREFECT_FLOW),
                                             job_variables={"command": command})
            worker = _start_worker(server)
            time.sleep(15)
            at = due_at(30)
            ids = create_due_runs(api, deployment, count, at)
            deadline = at.timestamp() + INFRA_START_SECONDS + 120
            runs: list[dict] = []
            while time.time() < deadline:
                runs = _patiently(lambda: _prefect_runs(api, client, ids))
                if all(r.get("start_time") for r in runs):
                    break
                time.sleep(2)
        return Lateness(count, [_seconds(r["start_time"]) - _seconds(r["expected_start_time"])
                                for r in runs if r.get("start_time")])
    finally:
        if worker is not None:
            _stop(worker)
        server.stop()


def pushpool_slow_start(count: int) -> Lateness:
    """pushpool: the local pusher's command sleeps 60 s before the runner starts; the pool's prefetch
    (90 s) submits early, and the runner waits for the scheduled time."""
    server = PushpoolServer()
    try:
        api = PushpoolApi(server)
        project = _project(PUSHPOOL_FLOW)
        command = ["sh", "-c", f"sleep {INFRA_START_SECONDS}; exec {sys.executable} -m pushpool.runner"]
        with api.client() as client:
            api.create_pool(client, "slow", prefetch_seconds=INFRA_START_SECONDS + 30)
            deployment = api.create_deployment(client, "slow", "slow",
                                               job_variables={"working_dir": str(project), "command": command})
            at = due_at(INFRA_START_SECONDS + 35)
            ids = create_due_runs(api, deployment, count, at)
            deadline = at.timestamp() + 120
            runs: list[dict] = []
            while time.time() < deadline:
                try:
                    runs = [client.get(f"/flow_runs/{run_id}").json() for run_id in ids]
                except httpx.HTTPError:
                    continue
                if all(r.get("start_time") for r in runs):
                    break
                time.sleep(2)
        return Lateness(count, [_seconds(r["start_time"]) - _seconds(r["scheduled_time"])
                                for r in runs if r.get("start_time")])
    finally:
        server.stop()
