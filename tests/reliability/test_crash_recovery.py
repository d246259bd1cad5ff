"""Crash in the middle: kill -9 the embedded server at random moments of dispatch, restart it.

Every run must still reach a final state, and each flow body must run exactly once
(it appends its run id to a file, so a second start would show). Runners keep
retrying their reports while the server is down. ``PUSHPOOL_CRASH_RUNS`` and
``PUSHPOOL_CRASH_KILLS`` size it (``make test-slow`` uses more).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from pushpool.client import PushpoolClient
from tests.fakes.net import free_port

REPO = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("PUSHPOOL_CRASH_RUNS", "24"))
KILLS = int(os.environ.get("PUSHPOOL_CRASH_KILLS", "5"))
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

FLOW = '''
import os

def once():
    with open(os.environ["RECORD_FILE"], "a") as fh:
        fh.write(os.environ["PUSHPOOL_FLOW_RUN_ID"] + "\\n")
'''


class Server:
    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port, self.process = home, port, None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
        self.env.update(PUSHPOOL_HOME=str(home), PUSHPOOL_SUBMISSION_LEASE_SECONDS="2",
                        PUSHPOOL_TICK_INTERVAL_SECONDS="0.1", PYTHONPATH=str(REPO))

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "pushpool.cli.main", "server", "start", "--port",
                                         str(self.port), "--log-level", "warning"], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/health").is_success:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not come up")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.mark.timeout(300)
def test_kill_9_during_dispatch_loses_no_run_and_runs_none_twice(tmp_path, monkeypatch):
    home, project, record = tmp_path / "home", tmp_path / "project", tmp_path / "record.txt"
    project.mkdir()
    (project / "flows.py").write_text(FLOW)
    server = Server(home, free_port())
    server.start()
    monkeypatch.setenv("PUSHPOOL_HOME", str(home))
    client = PushpoolClient()
    client.create_work_pool("crashy", "local:push")
    dep = client.apply_deployment(flow_name="once", name="d", entrypoint="flows.py:once", work_pool_name="crashy",
                                  job_variables={"working_dir": str(project), "env": {"RECORD_FILE": str(record)}})
    # Server down while the runs are created, so the first start has a whole batch to dispatch.
    server.kill()
    ids = []
    rng = random.Random(7)
    server.start()
    for _ in range(RUNS):
        ids.append(client.create_flow_run(dep["id"])["id"])
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.05, 0.6))
        server.kill()
        server.start()
        for _ in range(max(1, RUNS // KILLS)):
            ids.append(client.create_flow_run(dep["id"])["id"])
    deadline = time.monotonic() + 120
    runs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        runs = {i: client.read_flow_run(i) for i in ids}
        if {r["state"]["type"] for r in runs.values()} <= FINAL:
            break
        time.sleep(0.5)
    server.kill()
    states = {i: r["state"]["type"] for i, r in runs.items()}
    assert set(states.values()) <= FINAL, Counter(states.values())
    executions = Counter(record.read_text().split()) if record.exists() else Counter()
    assert max(executions.values()) == 1, [r for r, n in executions.items() if n > 1]
    assert Counter(states.values()) == Counter({"COMPLETED": len(ids)}), {
        i: runs[i]["state"] for i, s in states.items() if s != "COMPLETED"}
    assert set(executions) == set(ids)
