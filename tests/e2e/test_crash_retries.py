"""Infrastructure-crash retries through ``local:push``: a killed runner is submitted again, a raising flow is not."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

from tests.e2e.local_project import local_project
from tests.e2e.test_local_loop import runner_pid
from tests.live_server import wait_for_state

FLOWS = textwrap.dedent('''
    import os, time
    from pushpool import flow

    @flow
    def survives() -> None:
        marker = "attempted-" + os.environ["PUSHPOOL_FLOW_RUN_ID"]
        first = not os.path.exists(marker)
        open(marker, "a").close()
        if first:  # the first attempt waits to be killed
            open("pid-" + os.environ["PUSHPOOL_FLOW_RUN_ID"], "w").write(str(os.getpid()))
            time.sleep(60)
        print("second attempt done")

    @flow(retries=0)
    def raises() -> None:
        open("raised-" + os.environ["PUSHPOOL_FLOW_RUN_ID"], "a").write("x")
        raise ValueError("a bug, not the infrastructure")
''')


def test_a_killed_run_is_submitted_again_and_a_raising_flow_is_not(live, tmp_path: Path):
    local = local_project(live, tmp_path, FLOWS, pool="retrying", crash_retries=1, crash_retry_delay_seconds=0)
    client, project = local.client, local.dir
    deps = {fn: local.deploy(fn) for fn in ("survives", "raises")}

    run = client.create_flow_run(deps["survives"]["id"])
    os.kill(runner_pid({"dir": project}, run["id"]), signal.SIGKILL)
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=60)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert done["crash_attempts"] == 1
    history = client.request("GET", client.ws(f"/flow_runs/{run['id']}/states"))
    names = [(s["type"], s["name"]) for s in history]
    assert ("SCHEDULED", "AwaitingRetry") in names
    retry = next(s for s in history if s["name"] == "AwaitingRetry")
    assert "exit code 137" in retry["message"] and "submitting it again (1 of 1)" in retry["message"]
    assert [t for t, _ in names].count("RUNNING") == 2 and names[-1] == ("COMPLETED", "Completed")
    assert "second attempt done" in client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))["lines"]

    failing = client.create_flow_run(deps["raises"]["id"])
    failed = wait_for_state(client, failing["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=60)
    assert failed["state"]["type"] == "FAILED" and failed["crash_attempts"] == 0
    assert (project / f"raised-{failing['id']}").read_text() == "x"  # ran once


def test_without_crash_retries_a_killed_run_stays_crashed(live, tmp_path: Path):
    local = local_project(live, tmp_path, FLOWS, pool="plain")
    client, project = local.client, local.dir
    run = client.create_flow_run(local.deploy("survives")["id"])
    os.kill(runner_pid({"dir": project}, run["id"]), signal.SIGKILL)
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=60)
    assert done["state"]["type"] == "CRASHED" and done["crash_attempts"] == 0
