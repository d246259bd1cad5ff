"""A hostile tenant gets nothing, part 1: no code on the control plane's host, no secrets by any path.

Each test replays an attack that worked before (issue 19) and checks both that it is refused and that
nothing secret reached the attacker through anything they can read: runs, states, events, logs.
Part 2 (``test_hostile_load.py``) covers what a tenant can make the server compute, send or store.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import textwrap
from pathlib import Path

import pytest

from tests.live_server import wait_for_state

SECRET = "pp-TOPSECRET-4b1d-never-leak"
PLACEHOLDER = "{{ pushpool.blocks.topsecret.value }}"


@pytest.fixture
def tenants(api):
    """Workspace A (the admin's, with a secret block and a local pool) and workspace B, owned by mallory,
    a user who is an owner there but no instance administrator; plus A's runner, developer and viewer."""
    api.ok("POST", api.ws("/blocks"), json={"name": "topsecret", "type": "secret", "data": {"value": SECRET}})
    api.pool("host", type="local:push")
    api.ok("POST", "/api/workspaces", json={"name": "b"})
    mallory = api.as_key(api.user("mallory", role="owner", workspace="b"), workspace="b")
    return {"admin": api, "mallory": mallory, "runner": api.as_key(api.user("rita", role="runner")),
            "developer": api.as_key(api.user("dave", role="developer")),
            "viewer": api.as_key(api.user("vera", role="viewer"))}


def everything_readable(api) -> str:
    """All a tenant can read in its workspace: runs with their states and history, events."""
    runs = api.ok("GET", api.ws("/flow_runs"))
    parts = [json.dumps(runs)]
    for run in runs:
        parts.append(json.dumps(api.ok("GET", api.ws(f"/flow_runs/{run['id']}/states"))))
    parts.append(json.dumps(api.ok("GET", api.ws("/events"), params={"limit": 1000})))
    return "\n".join(parts)


# --------------------------------------------------------------------------- host code execution


def test_no_tenant_but_an_admin_creates_a_host_pool(tenants):
    mallory = tenants["mallory"]
    refused = mallory.post(mallory.ws("/work_pools"), json={"name": "mine", "type": "local:push"})
    assert refused.status_code == 403 and "instance administrator" in refused.json()["detail"]
    for role in ("developer", "runner"):
        api = tenants[role]
        assert api.post(api.ws("/work_pools"), json={"name": f"p-{role}", "type": "local:push"}).status_code == 403


def test_no_tenant_but_an_admin_changes_what_a_host_pool_runs(tenants):
    developer = tenants["developer"]
    template = {"job_configuration": {"command": "{{ command }}"},
                "variables": {"type": "object", "properties": {"command": {"type": "string"}}}}
    changed = developer.request("PATCH", developer.ws("/work_pools/host"), json={"base_job_template": template})
    assert changed.status_code == 403
    deployed = developer.post(developer.ws("/deployments"), json={
        "flow_name": "f", "name": "d", "entrypoint": "f.py:f", "work_pool_name": "host",
        "job_variables": {"command": "cat ~/.pushpool/encryption.key"}})
    assert deployed.status_code == 403


@pytest.mark.parametrize("variable, value", [
    ("command", "env > /tmp/stolen"), ("working_dir", "/"), ("env", {"PYTHONSTARTUP": "/tmp/x.py"}),
    ("image", "evil:latest"),
])
def test_a_runner_cannot_override_what_a_host_run_executes(tenants, variable, value):
    admin, runner = tenants["admin"], tenants["runner"]
    dep = admin.deployment(pool="host")
    response = runner.post(runner.ws(f"/deployments/{dep['id']}/runs"), json={"job_variables": {variable: value}})
    assert response.status_code == 403 and f"job_variables.{variable}" in response.json()["detail"]
    assert admin.ok("GET", admin.ws("/flow_runs")) == []


def test_a_runner_cannot_override_commands_images_or_credentials_on_any_pool(tenants):
    admin, runner = tenants["admin"], tenants["runner"]
    admin.pool("cloud")
    dep = admin.deployment(name="cloud", pool="cloud")
    for variable in ("command", "image", "aws_credentials", "working_dir"):
        response = runner.post(runner.ws(f"/deployments/{dep['id']}/runs"), json={"job_variables": {variable: "x"}})
        assert response.status_code == 403, (variable, response.text)
    allowed = runner.post(runner.ws(f"/deployments/{dep['id']}/runs"),
                          json={"job_variables": {"env": {"MODE": "fast"}}, "parameters": {"n": 1}})
    assert allowed.status_code == 201, allowed.text  # parameters and run-overridable variables are fine


def test_host_processes_off_refuses_even_the_admin(api_with):
    admin = api_with(host_processes="off")
    response = admin.post(admin.ws("/work_pools"), json={"name": "host", "type": "local:push"})
    assert response.status_code == 422 and "PUSHPOOL_HOST_PROCESSES=off" in response.json()["detail"]


# --------------------------------------------------------------------------- secrets


def test_block_placeholders_in_run_variables_stay_text(tenants, dispatch, fake_pusher):
    admin, runner = tenants["admin"], tenants["runner"]
    admin.pool("cloud")
    dep = admin.deployment(name="cloud", pool="cloud")
    run = runner.ok("POST", runner.ws(f"/deployments/{dep['id']}/runs"),
                    json={"job_variables": {"env": {"LEAK": PLACEHOLDER}, "labels": {"x": PLACEHOLDER}}})
    dispatch()
    [job] = fake_pusher.jobs
    assert job.flow_run_id == run["id"]
    assert SECRET not in json.dumps(job.configuration, default=str)
    assert PLACEHOLDER in json.dumps(job.configuration)  # passed on as the text the run gave
    assert SECRET not in everything_readable(tenants["viewer"])


def test_a_resolved_secret_never_reaches_a_state_message_or_event(tenants, dispatch, fake_pusher, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    admin = tenants["admin"]
    admin.pool("cloud")
    dep = admin.deployment(name="cloud", pool="cloud", job_variables={"env": {"TOKEN": PLACEHOLDER}})
    fake_pusher.errors.append("echo")  # the cloud's error repeats the whole configuration
    run = admin.run(dep["id"])
    dispatch()
    ctx.events.flush()
    crashed = admin.ok("GET", admin.ws(f"/flow_runs/{run['id']}"))
    assert crashed["state"]["type"] == "CRASHED" and "invalid configuration" in crashed["state"]["message"]
    assert SECRET not in crashed["state"]["message"] and "********" in crashed["state"]["message"]
    assert SECRET not in everything_readable(tenants["viewer"])
    with ctx.store._conn() as conn:  # nor in clear anywhere in the database
        dump = "\n".join(str(row) for table in ("flow_runs", "flow_run_states", "events")
                         for row in conn.execute(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
    assert SECRET not in dump
    assert caplog.text and SECRET not in caplog.text  # nor in the server's log


def test_workspace_b_cannot_name_workspace_a_blocks(tenants, dispatch, fake_pusher):
    mallory = tenants["mallory"]
    mallory.pool("cloud")
    dep = mallory.deployment(name="steal", pool="cloud", job_variables={"env": {"X": PLACEHOLDER}})
    run = mallory.run(dep["id"])
    dispatch()
    assert fake_pusher.jobs == []
    crashed = mallory.ok("GET", mallory.ws(f"/flow_runs/{run['id']}"))
    assert crashed["state"]["type"] == "CRASHED" and SECRET not in json.dumps(crashed)


# --------------------------------------------------------------------------- what a host run can reach

PROBE = textwrap.dedent('''
    import json, os
    from pathlib import Path

    def probe(home: str, db: str):
        def readable(path):
            try:
                return bool(Path(path).read_bytes())
            except OSError:
                return False
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        report = {"key": readable(os.path.join(home, "encryption.key")), "db": readable(db),
                  "home_entries": sorted(os.listdir(home)) if os.path.isdir(home) else [],
                  "env": sorted(os.environ), "pids": pids}
        Path("report.json").write_text(json.dumps(report))
''')


def test_a_host_run_cannot_read_the_servers_files_environment_or_processes(live_with, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-credential")
    live = live_with()  # the default: admins may run host processes
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text(PROBE)
    client = live.client()
    client.create_work_pool("host", "local:push")
    dep = client.apply_deployment(flow_name="probe", name="d", entrypoint="flows.py:probe", work_pool_name="host",
                                  job_variables={"working_dir": str(project)},
                                  parameters={"home": str(live.settings.home), "db": str(live.settings.sqlite_path)})
    run = client.create_flow_run(dep["id"])
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "COMPLETED", done["state"]
    report = json.loads((project / "report.json").read_text())
    assert (live.settings.home / "encryption.key").exists() and live.settings.sqlite_path.exists()
    assert report["key"] is False and report["db"] is False and report["home_entries"] == []
    assert not [name for name in report["env"] if name.startswith(("AWS_", "PUSHPOOL_ENCRYPTION"))]
    assert "PUSHPOOL_API_KEY" not in report["env"]
    assert os.getpid() not in report["pids"] and max(report["pids"]) < 50  # its own pid namespace


def test_the_servers_files_are_private(live_with):
    live = live_with()
    client = live.client()
    client.create_work_pool("cloud", "fake:push")
    home = live.settings.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in (home / "encryption.key", live.settings.sqlite_path, Path(f"{live.settings.sqlite_path}-wal")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
