"""The full loop through ``local:push`` on a real server: schedule → dispatch → runner → final state."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.live_server import wait_for_state

FLOWS = textwrap.dedent('''
    import os, time
    from pushpool import flow

    @flow
    def greet(name: str = "world") -> str:
        print(f"hello {name}")
        return name

    @flow(retries=1)
    def boom(message: str = "kaput"):
        raise ValueError(message)

    def sleepy(seconds: float = 60):
        open("pid-" + os.environ["PUSHPOOL_FLOW_RUN_ID"], "w").write(str(os.getpid()))
        time.sleep(seconds)
''')


@pytest.fixture
def project(tmp_path: Path, live) -> dict:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "flows.py").write_text(FLOWS)
    client = live.client()
    client.create_work_pool("local", "local:push")
    deps = {}
    for fn in ("greet", "boom", "sleepy"):
        deps[fn] = client.apply_deployment(
            flow_name=fn, name="test", entrypoint=f"flows.py:{fn}", work_pool_name="local",
            job_variables={"working_dir": str(tmp_path / "project")})
    return {"client": client, "deps": deps, "dir": tmp_path / "project"}


def runner_pid(project: dict, run_id: str, timeout: float = 20) -> int:
    """The host pid of the flow's process (it wrote its own pid, which is namespaced inside the sandbox)."""
    path = project["dir"] / f"pid-{run_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return host_pid(run_id, int(path.read_text()))
        time.sleep(0.05)
    raise AssertionError("the flow never started")


def host_pid(run_id: str, inner_pid: int) -> int:
    """Find the process whose innermost pid is ``inner_pid`` and whose environment names ``run_id``."""
    marker = f"PUSHPOOL_FLOW_RUN_ID={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if marker in environ.split(b"\0") and nspids and int(nspids[-1]) == inner_pid:
            return int(entry.name)
    raise AssertionError(f"no process of run {run_id} has pid {inner_pid} in its namespace")


def test_scheduled_runs_complete_through_the_local_pusher(live, project):
    client = project["client"]
    dep = client.apply_deployment(flow_name="greet", name="every-2s", entrypoint="flows.py:greet",
                                  work_pool_name="local", parameters={"name": "sched"},
                                  job_variables={"working_dir": str(project["dir"])}, schedules=[{"interval": 2}])
    deadline = time.monotonic() + 30
    completed = []
    while time.monotonic() < deadline and len(completed) < 2:
        completed = client.list_flow_runs(deployment_id=dep["id"], state="COMPLETED")
        time.sleep(0.25)
    assert len(completed) >= 2
    run = completed[0]
    assert run["infra_id"].startswith("pid-") and run["console_url"].startswith("file://")
    started, scheduled = (datetime.fromisoformat(run[k]) for k in ("start_time", "scheduled_time"))
    assert started >= scheduled  # the runner waited for its time
    log = Path(run["console_url"].removeprefix("file://")).read_text()
    assert "hello sched" in log


def test_an_ad_hoc_run_with_parameters_completes(live, project):
    client = project["client"]
    run = client.create_flow_run(project["deps"]["greet"]["id"], parameters={"name": "adhoc"})
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "COMPLETED"
    history = [s.type.value for s in live.store.get_state_history(run["id"])]
    assert history == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]


def test_a_failing_flow_is_failed_with_its_exception_after_retries(live, project):
    client = project["client"]
    run = client.create_flow_run(project["deps"]["boom"]["id"], parameters={"message": "disk full"})
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "FAILED"
    assert done["state"]["message"] == "ValueError: disk full"
    log = Path(done["console_url"].removeprefix("file://")).read_text()
    assert "Attempt 1 of 2 failed: ValueError: disk full" in log


def test_a_run_killed_with_sigkill_is_crashed(live, project):
    client = project["client"]
    run = client.create_flow_run(project["deps"]["sleepy"]["id"])
    os.kill(runner_pid(project, run["id"]), signal.SIGKILL)
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "CRASHED"
    assert "exit code 137" in done["state"]["message"] and "out of memory" in done["state"]["message"]


def test_cancelling_a_running_run_stops_its_process(live, project):
    client = project["client"]
    run = client.create_flow_run(project["deps"]["sleepy"]["id"])
    pid = runner_pid(project, run["id"])
    wait_for_state(client, run["id"], {"RUNNING"})
    assert client.cancel_flow_run(run["id"])["state"]["type"] == "CANCELLING"
    done = wait_for_state(client, run["id"], {"CANCELLED", "CRASHED", "COMPLETED", "FAILED"})
    assert done["state"]["type"] == "CANCELLED"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the flow's process is still alive after cancellation")


def test_runtime_limit_stops_a_run(live, project):
    client = project["client"]
    run = client.create_flow_run(project["deps"]["sleepy"]["id"], job_variables={"max_runtime_seconds": 2})
    done = wait_for_state(client, run["id"], {"CRASHED", "COMPLETED", "FAILED"}, timeout=30)
    assert done["state"]["type"] == "CRASHED" and "maximum runtime (2s)" in done["state"]["message"]


def test_the_container_never_sees_the_users_key(live, project, tmp_path):
    client = project["client"]
    (project["dir"] / "envdump.py").write_text(textwrap.dedent('''
        import json, os
        def dump():
            json.dump(dict(os.environ), open("env.json", "w"))
    '''))
    dep = client.apply_deployment(flow_name="envdump", name="t", entrypoint="envdump.py:dump", work_pool_name="local",
                                  job_variables={"working_dir": str(project["dir"])})
    run = client.create_flow_run(dep["id"])
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
    env = json.loads((project["dir"] / "env.json").read_text())
    assert env["PUSHPOOL_RUN_TOKEN"].startswith("ppr_")
    assert live.key not in json.dumps(env)


def test_a_project_with_its_own_sdk_and_infra_packages_runs_as_written(live, project):
    """Folders named like pushpool's own (``sdk/``, ``infra/``) are the project's: pushpool installs only as
    ``pushpool``, so neither shadows the other."""
    root = project["dir"]
    for own in ("sdk", "infra"):
        (root / own).mkdir()
        (root / own / "__init__.py").write_text(f"MINE = {own!r}\n")
    (root / "own.py").write_text(textwrap.dedent('''
        import infra, sdk
        from pushpool import flow

        @flow
        def own():
            print("packages:", sdk.MINE, infra.MINE)
    '''))
    client = project["client"]
    dep = client.apply_deployment(flow_name="own", name="test", entrypoint="own.py:own", work_pool_name="local",
                                  job_variables={"working_dir": str(root)})
    run = client.create_flow_run(dep["id"])
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "COMPLETED", done["state"]
    log = Path(done["console_url"].removeprefix("file://")).read_text()
    assert "packages: sdk infra" in log
