"""The local pusher with real processes: idempotent submit, exit codes, SIGKILL, cancel, restart."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from pushpool.pushers.base import InfraState, Job, PusherContext
from pushpool.pushers.local import LocalPusher


def make_job(run_id: str, script: str, tmp_path: Path) -> Job:
    return Job(flow_run_id=run_id, workspace_id="ws", pool_name="p", deployment_name="f/d", flow_run_name="r",
               configuration={"working_dir": str(tmp_path)}, env={"PUSHPOOL_FLOW_RUN_ID": run_id, "MARK": "m"},
               command=[sys.executable, "-c", script])


@pytest.fixture
def pusher(tmp_path):
    return LocalPusher(PusherContext(state_dir=tmp_path / "state", api_url="http://127.0.0.1:1"))


def wait_for(pusher: LocalPusher, infra_id: str, wanted: set[InfraState], timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = pusher.status([infra_id])[infra_id]
        if status.state in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{infra_id} never reached {wanted}: {status}")


def child_pid(pusher: LocalPusher, infra_id: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            return json.loads((pusher.dir / f"{infra_id}.json").read_text())["child_pid"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.02)
    raise AssertionError("supervisor never wrote its state")


def test_runs_the_command_with_the_job_env_and_records_exit_0(pusher, tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_API_KEY", "ppu_users_own_key")
    script = ("import os, json; "
              "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(('PUSHPOOL', 'MARK'))}))")
    submission = pusher.submit(make_job("run-1", script, tmp_path))
    status = wait_for(pusher, submission.infra_id, {InfraState.EXITED})
    assert status.exit_code == 0 and status.reason is None
    output = (pusher.dir / "run-1.log").read_text()
    env = json.loads(output.strip().splitlines()[-1])
    assert env == {"PUSHPOOL_FLOW_RUN_ID": "run-1", "MARK": "m"}  # never the user's key
    assert submission.console_url.startswith("file://") and submission.console_url.endswith("run-1.log")


def test_submitting_twice_starts_one_process(pusher, tmp_path):
    job = make_job("run-2", "import time; time.sleep(0.5)", tmp_path)
    first = pusher.submit(job)
    second = pusher.submit(job)
    assert first == second
    assert len(list(pusher.dir.glob("pid-*.json"))) <= 1
    wait_for(pusher, first.infra_id, {InfraState.EXITED})
    assert len(list(pusher.dir.glob("pid-*.json"))) == 1


def test_non_zero_exit_is_classified(pusher, tmp_path):
    submission = pusher.submit(make_job("run-3", "raise SystemExit(3)", tmp_path))
    status = wait_for(pusher, submission.infra_id, {InfraState.EXITED})
    assert status.exit_code == 3 and status.reason == "exit code 3"


def test_sigkill_of_the_run_is_reported_as_137_out_of_memory(pusher, tmp_path):
    submission = pusher.submit(make_job("run-4", "import time; time.sleep(60)", tmp_path))
    wait_for(pusher, submission.infra_id, {InfraState.RUNNING})
    os.kill(child_pid(pusher, submission.infra_id), signal.SIGKILL)
    status = wait_for(pusher, submission.infra_id, {InfraState.EXITED})
    assert status.exit_code == 137 and "likely out of memory" in status.reason


def test_cancel_terminates_a_running_process(pusher, tmp_path):
    submission = pusher.submit(make_job("run-5", "import time; time.sleep(60)", tmp_path))
    wait_for(pusher, submission.infra_id, {InfraState.RUNNING})
    pusher.cancel(submission.infra_id)
    status = wait_for(pusher, submission.infra_id, {InfraState.EXITED, InfraState.MISSING})
    assert status.state is InfraState.MISSING or status.exit_code == 143


def test_exit_code_survives_a_control_plane_restart(pusher, tmp_path):
    submission = pusher.submit(make_job("run-6", "raise SystemExit(5)", tmp_path))
    wait_for(pusher, submission.infra_id, {InfraState.EXITED})
    restarted = LocalPusher(PusherContext(state_dir=tmp_path / "state", api_url="x"))
    assert restarted.status([submission.infra_id])[submission.infra_id].exit_code == 5
    # and a repeated submit after the restart still finds the first process
    assert restarted.submit(make_job("run-6", "raise SystemExit(0)", tmp_path)) == submission


def test_a_killed_supervisor_is_missing(pusher, tmp_path):
    submission = pusher.submit(make_job("run-7", "import time; time.sleep(60)", tmp_path))
    wait_for(pusher, submission.infra_id, {InfraState.RUNNING})
    os.killpg(int(submission.infra_id.removeprefix("pid-")), signal.SIGKILL)
    status = wait_for(pusher, submission.infra_id, {InfraState.MISSING})
    assert "vanished" in status.reason


def test_cleanup_removes_state_and_keeps_the_log(pusher, tmp_path):
    submission = pusher.submit(make_job("run-8", "print('hi')", tmp_path))
    wait_for(pusher, submission.infra_id, {InfraState.EXITED})
    pusher.cleanup(submission.infra_id)
    assert not (pusher.dir / f"{submission.infra_id}.json").exists()
    assert "hi" in (pusher.dir / "run-8.log").read_text()


def test_missing_working_dir_is_a_permanent_error(pusher, tmp_path):
    from pushpool.pushers.base import PermanentPusherError

    job = make_job("run-9", "pass", tmp_path)
    job = Job(**{**job.__dict__, "configuration": {"working_dir": str(tmp_path / "nope")}})
    with pytest.raises(PermanentPusherError, match="does not exist"):
        pusher.submit(job)
    assert not (pusher.dir / "run-9.submit").exists()  # nothing started, nothing claimed


def test_a_marker_left_by_a_dead_control_plane_never_starts_a_second_process(pusher, tmp_path):
    from pushpool.pushers.base import TransientPusherError

    job = make_job("run-10", "import time; time.sleep(60)", tmp_path)
    first = pusher.submit(job)
    wait_for(pusher, first.infra_id, {InfraState.RUNNING})
    # The control plane died after spawning but before writing the infra id into the marker.
    (pusher.dir / "run-10.submit").write_text("")
    assert pusher.submit(job) == first
    assert (pusher.dir / "run-10.submit").read_text() == first.infra_id
    pusher.cancel(first.infra_id)
    # It died before spawning: a resubmission waits (transient), then starts the run once.
    (pusher.dir / "run-11.submit").write_text("")
    with pytest.raises(TransientPusherError):
        pusher.submit(make_job("run-11", "pass", tmp_path))
    old = time.time() - 60
    os.utime(pusher.dir / "run-11.submit", (old, old))
    started = pusher.submit(make_job("run-11", "pass", tmp_path))
    assert wait_for(pusher, started.infra_id, {InfraState.EXITED}).exit_code == 0


def test_a_marker_of_a_control_plane_that_died_before_spawning_is_taken_over_at_once(pusher, tmp_path):
    """The marker names the process spawning (pid and start time): a dead one's marker needs no ten-second wait,
    a live one's (another thread spawning right now) is waited for."""
    import subprocess

    from pushpool.pushers.base import TransientPusherError
    from pushpool.pushers.local import _process_start

    gone = subprocess.Popen(["true"])
    gone.wait()
    (pusher.dir / "run-12.submit").write_text(f"spawning:{gone.pid}:{_process_start(os.getpid())}")
    started = pusher.submit(make_job("run-12", "pass", tmp_path))  # at once: its spawner is gone
    assert wait_for(pusher, started.infra_id, {InfraState.EXITED}).exit_code == 0
    (pusher.dir / "run-13.submit").write_text(f"spawning:{os.getpid()}:{_process_start(os.getpid())}")
    with pytest.raises(TransientPusherError, match="in progress"):  # a live spawner: never a second process
        pusher.submit(make_job("run-13", "pass", tmp_path))
    (pusher.dir / "run-14.submit").write_text(f"spawning:{os.getpid()}:1")  # same pid, another process before
    assert pusher.submit(make_job("run-14", "pass", tmp_path)).infra_id


def test_a_run_whose_supervisor_has_not_written_its_state_yet_is_adopted_not_started_again(pusher, tmp_path):
    """The control plane died between starting the run's process and writing its infra id, and the supervisor has
    not written its state file yet: the run's process is found by its command line and environment."""
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    (pusher.dir / "run-15.submit").write_text(f"spawning:{gone.pid}:1")
    # stands in for the shim: it names the runs directory and carries the run's id in its environment
    shim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(pusher.dir), "--", "x"],
                            env={**os.environ, "PUSHPOOL_FLOW_RUN_ID": "run-15"}, start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(pusher.dir), "--", "x"],
                             env={**os.environ, "PUSHPOOL_FLOW_RUN_ID": "run-other"}, start_new_session=True)
    try:
        submission = pusher.submit(make_job("run-15", "raise SystemExit(9)", tmp_path))
        assert submission.infra_id == f"pid-{shim.pid}"
        assert (pusher.dir / "run-15.submit").read_text() == submission.infra_id
    finally:
        for process in (shim, other):
            process.kill()
            process.wait()
