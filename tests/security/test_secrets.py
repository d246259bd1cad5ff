"""Secrets never appear in any API response, CLI output, log line or error message, and are
stored only encrypted. Everything the scenario produces is captured and searched."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import httpx
from typer.testing import CliRunner

from pushpool.cli.main import app as cli_app
from tests.live_server import wait_for_state

SECRET = "pp-SECRET-7f3a9c-never-print-me"


def test_a_secret_used_by_a_run_leaks_nowhere(live_with, tmp_path, monkeypatch, caplog):
    # A one-team server: local:push may take values from blocks (docs/security.md).
    live = live_with(host_processes="members")
    caplog.set_level(logging.DEBUG)
    captured: list[str] = []
    original_send = httpx.Client.send

    def capturing_send(self, request, **kwargs):
        response = original_send(self, request, **kwargs)
        response.read()
        captured.append(response.text)
        return response

    monkeypatch.setattr(httpx.Client, "send", capturing_send)
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text(textwrap.dedent('''
        import os

        def check():
            assert os.environ["TOKEN"].startswith("pp-SECRET"), "the run got its secret"
            print("token received, length", len(os.environ["TOKEN"]))
    '''))
    client = live.client()
    client.request("POST", client.ws("/blocks"), json={"name": "tok", "type": "secret", "data": {"value": SECRET}})
    client.create_work_pool("local", "local:push")
    dep = client.apply_deployment(flow_name="check", name="d", entrypoint="flows.py:check", work_pool_name="local",
                                  job_variables={"working_dir": str(project),
                                                 "env": {"TOKEN": "{{ pushpool.blocks.tok.value }}"}})
    run = client.create_flow_run(dep["id"])
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "COMPLETED", done["state"]  # the run really received the secret

    # Error paths that echo input must not echo secrets either.
    for body in ({"name": "bad", "type": "secret", "data": {"value": SECRET, "extra": SECRET}},
                 {"name": "tok", "type": "secret", "data": {"value": SECRET}}):
        response = httpx.post(f"{live.settings.api_url}{client.ws('/blocks')}", json=body,
                              headers={"Authorization": f"Bearer {live.key}"})
        assert response.status_code in (409, 422)
        captured.append(response.text)

    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    runner = CliRunner()
    for args in (["block", "ls"], ["block", "inspect", "tok"], ["block", "ls", "-o", "json"],
                 ["flow-run", "inspect", run["id"]], ["deployment", "inspect", "check/d"], ["flow-run", "ls"],
                 ["flow-run", "logs", run["id"]], ["config", "view", "--show-defaults"]):
        result = runner.invoke(cli_app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (args, result.output)
        captured.append(result.output)

    captured.extend(record.getMessage() for record in caplog.records)
    captured.append(Path(done["console_url"].removeprefix("file://")).read_text())
    assert len(captured) > 20
    leaks = [text[:200] for text in captured if SECRET in text]
    assert leaks == []
    for path in live.settings.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"{path} holds the secret in clear"
