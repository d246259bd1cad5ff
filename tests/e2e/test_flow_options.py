"""Flow options through ``local:push``: a timeout ends the run FAILED (TimedOut); hooks run on completion,
failure and cancellation; cancellation reaches the runner as SIGTERM."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from tests.e2e.local_project import local_project
from tests.live_server import wait_for_state, wait_until

FLOWS = textwrap.dedent('''
    import os, time
    from pushpool import flow, task

    def note(what):
        def hook(flow, flow_run, state):
            open(f"hook-{what}-{flow_run['id']}", "w").write(f"{state['type']}|{state.get('name')}")
        hook.__name__ = f"note_{what}"
        return hook

    def broken_hook(flow, flow_run, state):
        raise RuntimeError("a hook that breaks changes nothing")

    @task
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    @flow(timeout_seconds=1, on_failure=[note("failure")])
    def slow() -> None:
        nap.submit(30)  # a task still running when the flow times out does not keep the run alive
        time.sleep(30)

    @flow(on_completion=[broken_hook, note("completion")])
    def quick() -> str:
        return "ok"

    @flow(on_cancellation=[note("cancellation")])
    def cancellable() -> None:
        open("started-" + os.environ["PUSHPOOL_FLOW_RUN_ID"], "w").close()
        time.sleep(60)
''')


def test_timeouts_hooks_and_cancellation(live, tmp_path: Path):
    local = local_project(live, tmp_path, FLOWS)
    client, project = local.client, local.dir
    started = time.monotonic()
    run = client.create_flow_run(local.deploy("slow")["id"])
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=30)
    assert (done["state"]["type"], done["state"]["name"]) == ("FAILED", "TimedOut")
    assert "exceeded its timeout of 1s" in done["state"]["message"] and time.monotonic() - started < 20
    assert (project / f"hook-failure-{run['id']}").read_text() == "FAILED|TimedOut"

    quick = client.create_flow_run(local.deploy("quick")["id"])
    assert wait_for_state(client, quick["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
    assert (project / f"hook-completion-{quick['id']}").read_text() == "COMPLETED|None"
    lines = "\n".join(client.request("GET", client.ws(f"/flow_runs/{quick['id']}/logs"))["lines"])
    assert "broken_hook hook failed" in lines and "a hook that breaks changes nothing" in lines

    stop = client.create_flow_run(local.deploy("cancellable")["id"])
    wait_until(lambda: (project / f"started-{stop['id']}").exists(), "the flow started")
    client.cancel_flow_run(stop["id"])
    final = wait_for_state(client, stop["id"], {"CANCELLED", "CRASHED", "COMPLETED", "FAILED"}, timeout=30)
    assert final["state"]["type"] == "CANCELLED"
    assert (project / f"hook-cancellation-{stop['id']}").read_text() == "CANCELLED|None"


RETRYING = textwrap.dedent('''
    import os
    from pushpool import flow

    @flow(retries=2, retry_delay_seconds=0.2)
    def flaky() -> None:
        marker = "tries-" + os.environ["PUSHPOOL_FLOW_RUN_ID"]
        tries = len(open(marker).read()) if os.path.exists(marker) else 0
        open(marker, "a").write("x")
        if tries < 1:
            raise ConnectionError("upstream not ready")
''')


def test_flow_retries_are_states_of_the_run(live, tmp_path: Path):
    local = local_project(live, tmp_path, RETRYING)
    client = local.client
    run = done = local.run(local.deploy("flaky"), timeout=30)
    assert done["state"]["type"] == "COMPLETED"
    history = client.request("GET", client.ws(f"/flow_runs/{run['id']}/states"))
    named = [(s["type"], s["name"]) for s in history]
    assert named[-3:] == [("RUNNING", "AwaitingRetry"), ("RUNNING", "Retrying"), ("COMPLETED", "Completed")]
    waiting = next(s for s in history if s["name"] == "AwaitingRetry")
    assert "Attempt 1 of 3 failed: ConnectionError: upstream not ready" in waiting["message"]
    events = client.request("GET", client.ws("/events"), params={"event": "pushpool.flow-run.AwaitingRetry"})
    assert [e["resource"]["pushpool.resource.id"] for e in events["events"]] == [f"pushpool.flow-run.{run['id']}"]
