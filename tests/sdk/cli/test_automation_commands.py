"""``pushpool events``, ``webhook`` and ``automation`` against a real ``pushpool server start``."""

from __future__ import annotations

import json
import re
import textwrap

import httpx

from tests.live_server import wait_until
from tests.sdk.cli.conftest import write_project

AUTOMATIONS = textwrap.dedent('''
    automations:
      - name: retrain-on-new-model
        trigger:
          expect: [model.updated]
          match: {pushpool.resource.id: "model.*"}
        actions:
          - type: run-deployment
            deployment: greet/dep
            parameters: {name: "{{ event.payload.body.model }}"}
      - name: pause-on-three-failures
        trigger: {expect: [pushpool.flow-run.Failed], threshold: 3, within: 600}
        actions: [{type: pause-deployment}]
''')


def test_webhooks_events_and_automations_from_the_cli(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "project"
    assert cli.python(write_project(project)).returncode == 0

    (tmp_path / "automations.yaml").write_text(AUTOMATIONS)
    out = cli.ok("automation", "create", "--from-file", str(tmp_path / "automations.yaml"))
    assert "retrain-on-new-model" in out and "3× pushpool.flow-run.Failed within 600s" in out
    cli.ok("automation", "create", "--from-file", str(tmp_path / "automations.yaml"))  # again: replaced, not doubled
    listed = cli.json("automation", "ls")
    assert [a["name"] for a in listed] == ["pause-on-three-failures", "retrain-on-new-model"]
    cli.ok("automation", "pause", "pause-on-three-failures")
    assert json.loads(cli.ok("automation", "inspect", "pause-on-three-failures"))["enabled"] is False
    cli.ok("automation", "resume", "pause-on-three-failures")
    cli.ok("automation", "delete", "pause-on-three-failures", "--yes")
    assert [a["name"] for a in cli.json("automation", "ls")] == ["retrain-on-new-model"]

    out = cli.ok("webhook", "create", "models", "--template",
                 '{"event": "model.updated", "resource": {"pushpool.resource.id": "model.{{ body.model }}"}}')
    url = re.search(r"curl -X POST (\S+) -d", out).group(1)
    assert httpx.post(url, data={"model": "bert"}).status_code == 202
    assert [w["name"] for w in cli.json("webhook", "ls")] == ["models"]
    assert json.loads(cli.ok("webhook", "get", "models"))["url"] == url

    streamed = cli.ok("events", "stream", "--event", "model.", "--since", "1 hour", "--count", "1", "--output", "json")
    assert json.loads(streamed.strip())["resource"]["pushpool.resource.id"] == "model.bert"
    wait_until(lambda: any(r["parameters"].get("name") == "bert" for r in cli.json(
        "flow-run", "ls", "--deployment", "greet/dep", "--limit", "1000")), "the automation's run")
    wait_until(lambda: {e["event"] for e in cli.json("events", "ls", "--event", "pushpool.automation.")} ==
               {"pushpool.automation.triggered", "pushpool.automation.action.executed"}, "the automation's events")

    assert "disabled" in cli.ok("webhook", "toggle", "models")
    assert httpx.post(url, data={"model": "x"}).status_code == 404
    cli.ok("webhook", "toggle", "models")
    new_url = cli.ok("webhook", "rotate", "models", "--yes").strip().splitlines()[-1].strip()
    assert new_url != url and httpx.post(url, data={"model": "x"}).status_code == 404
    cli.ok("webhook", "delete", "models", "--yes")
    assert httpx.post(new_url, data={"model": "x"}).status_code == 404

    (tmp_path / "bad.yaml").write_text("name: x\ntrigger: {posture: Proactive, after: [a]}\nactions: [{type: x}]\n")
    assert "automation x: " in cli.fails("automation", "create", "--from-file", str(tmp_path / "bad.yaml"))
    assert "--template" in cli.fails("webhook", "create", "nothing")
    assert "not a duration" in cli.fails("events", "ls", "--since", "yesterday-ish")

    assert cli.json("workspace", "settings", "--require-webhook-service-account")[
        "require_webhook_service_account"] is True
    assert "service_account" in cli.fails("webhook", "create", "open", "--template", "{{ body|tojson }}")
    assert cli.json("workspace", "settings", "--allow-open-webhooks")["require_webhook_service_account"] is False
    assert cli.json("workspace", "settings")["require_webhook_service_account"] is False
