"""Automations end to end on the embedded server, with real flows run by ``local:push``: a failure
notifies a real HTTP server on 127.0.0.1, a completed run of A runs B with a parameter from A, a
``curl -d model=x`` to a webhook becomes an event and a run, and a proactive SLA fires once."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pushpool import Automation, EventTrigger
from pushpool.automations import RunDeployment, SendNotification
from tests.live_server import wait_for_state, wait_until

FLOWS = textwrap.dedent('''
    import time
    from pushpool import flow

    @flow
    def extract(batch: int = 1) -> int:
        print(f"extracted batch {batch}")
        return batch

    @flow
    def load(batch: int = 0, upstream: str = ""):
        print(f"loading batch {batch} from {upstream}")

    @flow
    def broken():
        raise RuntimeError("the source table is missing")

    @flow
    def train(model: str = "none", seconds: float = 0):
        time.sleep(seconds)
        print(f"trained {model}")
''')


class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def live(live_with):
    """The receiver is on 127.0.0.1, which the control plane calls only when the operator allows it."""
    return live_with(outbound_allow=["127.0.0.1"])


@pytest.fixture
def project(tmp_path: Path, live) -> dict:
    root = tmp_path / "project"
    root.mkdir()
    (root / "flows.py").write_text(FLOWS)
    client = live.client()
    client.create_work_pool("local", "local:push")
    deps = {fn: client.apply_deployment(flow_name=fn, name="prod", entrypoint=f"flows.py:{fn}", work_pool_name="local",
                                        job_variables={"working_dir": str(root)})
            for fn in ("extract", "load", "broken", "train")}
    return {"client": client, "deps": deps}


def runs_of(client, deployment: dict) -> list[dict]:
    return client.request("GET", client.ws("/flow_runs"), params={"deployment_id": deployment["id"]})


def test_a_failed_run_sends_a_notification_with_the_run_name(live, project, receiver):
    client = project["client"]
    client.request("POST", client.ws("/blocks"), json={"name": "ops-slack", "type": "slack-webhook",
                                                       "data": {"url": receiver.url}})
    Automation(name="tell-ops", trigger=EventTrigger(expect=["pushpool.flow-run.Failed"]),
               actions=[SendNotification(block="ops-slack", subject="{{ flow_run.name }} failed",
                                         body="{{ flow.name }}: {{ event.payload.validated_state.message }}")],
               ).create(client)
    run = client.create_flow_run(project["deps"]["broken"]["id"])
    assert wait_for_state(client, run["id"], {"FAILED", "CRASHED", "COMPLETED"})["state"]["type"] == "FAILED"
    wait_until(lambda: receiver.bodies, "the notification")
    [body] = receiver.bodies
    assert body["text"].startswith(f"*{run['name']} failed*") and "broken: " in body["text"]


def test_a_completed_run_of_a_runs_b_with_a_parameter_from_a(live, project):
    client, deps = project["client"], project["deps"]
    Automation(name="extract-then-load",
               trigger=EventTrigger(expect=["pushpool.flow-run.Completed"],
                                    match_related={"pushpool.resource.name": "extract/prod"}),
               actions=[RunDeployment(deployment="load/prod", parameters={
                   "batch": "{{ flow_run.parameters.batch }}", "upstream": "{{ flow_run.name }}"})]).create(client)
    run = client.create_flow_run(deps["extract"]["id"], parameters={"batch": 42})
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
    wait_until(lambda: runs_of(client, deps["load"]), "deployment B's run")
    [chained] = runs_of(client, deps["load"])
    assert chained["parameters"] == {"batch": 42, "upstream": run["name"]}
    assert wait_for_state(client, chained["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"


def test_curl_to_a_webhook_makes_an_event_and_through_an_automation_a_run(live, project):
    client, deps = project["client"], project["deps"]
    created = client.request("POST", client.ws("/webhooks"), json={
        "name": "model-registry",
        "template": '{"event": "model.updated", "resource": {"pushpool.resource.id": "model.{{ body.model }}"}}'})
    Automation(name="retrain",
               trigger=EventTrigger(expect=["model.updated"], match={"pushpool.resource.id": "model.*"}),
               actions=[RunDeployment(deployment="train/prod",
                                      parameters={"model": "{{ event.payload.body.model }}"})]).create(client)
    url = live.settings.api_url + created["path"]
    if shutil.which("curl"):
        answer = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "model=x", url],
                                capture_output=True, text=True, timeout=30)
        assert answer.stdout == "202", answer
    else:  # the same request curl -d sends
        assert httpx.post(url, data={"model": "x"}).status_code == 202
    wait_until(lambda: client.request("GET", client.ws("/events"), params={"event": "model.updated"})["events"],
               "the webhook's event")
    event = client.request("GET", client.ws("/events"), params={"event": "model.updated"})["events"][0]
    assert event["resource"]["pushpool.resource.id"] == "model.x"
    wait_until(lambda: runs_of(client, deps["train"]), "the run")
    [run] = runs_of(client, deps["train"])
    assert run["parameters"]["model"] == "x"
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"


def test_a_proactive_sla_fires_once_for_a_slow_run_and_not_for_a_quick_one(live, project, receiver):
    client, deps = project["client"], project["deps"]
    client.request("POST", client.ws("/blocks"), json={"name": "sla-hook", "type": "webhook",
                                                       "data": {"url": receiver.url}})
    Automation(name="train-sla",
               trigger=EventTrigger(posture="Proactive", after=["pushpool.flow-run.Running"],
                                    expect=["pushpool.flow-run.Completed"], within=3,
                                    for_each=["pushpool.resource.id"],
                                    match_related={"pushpool.resource.name": "train/prod"}),
               actions=[SendNotification(block="sla-hook", subject="SLA missed by {{ flow_run.name }}")]).create(client)
    quick = client.create_flow_run(deps["train"]["id"], parameters={"model": "quick", "seconds": 0})
    slow = client.create_flow_run(deps["train"]["id"], parameters={"model": "slow", "seconds": 7})
    assert wait_for_state(client, quick["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
    assert wait_for_state(client, slow["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=40)["state"]["type"] == \
        "COMPLETED"
    time.sleep(1.5)  # a few more ticks: nothing else may fire
    assert [b["subject"] for b in receiver.bodies] == [f"SLA missed by {slow['name']}"]
