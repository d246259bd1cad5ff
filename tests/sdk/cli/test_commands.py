"""The remaining command groups, in-process (typer's CliRunner) against a real server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pushpool import profiles
from pushpool.cli.main import app

SECRET = "s3cr3t-Value-that-must-never-print"


@pytest.fixture
def run(server, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_HOME", str(server.home))
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True, **env: str):
        result = runner.invoke(app, list(args), env={"COLUMNS": "200", **env})
        if ok:
            assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
        return result

    return invoke


def as_json(result) -> object:
    return json.loads(result.output)


def test_work_pool_and_queue_management(run, tmp_path):
    run("work-pool", "create", "ops", "--type", "local:push", "--concurrency-limit", "3", "--prefetch-seconds", "5")
    pools = {p["name"]: p for p in as_json(run("work-pool", "ls", "-o", "json"))}
    assert pools["ops"]["concurrency_limit"] == 3 and pools["ops"]["prefetch_seconds"] == 5
    run("work-pool", "pause", "ops")
    run("work-pool", "set-concurrency-limit", "ops", "7")
    run("work-pool", "update", "ops", "--late-runs", "skip_late", "--skip-after-seconds", "60")
    inspected = as_json(run("work-pool", "inspect", "ops", "-o", "json"))
    assert inspected["paused"] and inspected["concurrency_limit"] == 7
    assert inspected["late_run_policy"] == {"mode": "skip_late", "skip_after_seconds": 60}
    run("work-pool", "resume", "ops")
    run("work-pool", "clear-concurrency-limit", "ops")
    template = run("work-pool", "get-default-base-job-template", "--type", "local:push").output
    edited = json.loads(template)
    edited["variables"]["properties"]["max_runtime_seconds"]["default"] = 600
    (tmp_path / "t.json").write_text(json.dumps(edited))
    run("work-pool", "update", "ops", "--base-job-template", str(tmp_path / "t.json"))
    pool = as_json(run("work-pool", "inspect", "ops", "-o", "json"))
    assert pool["base_job_template"]["variables"]["properties"]["max_runtime_seconds"]["default"] == 600
    assert not pool["paused"] and pool["concurrency_limit"] is None

    run("work-queue", "create", "urgent", "--pool", "ops", "--priority", "1")
    run("work-queue", "set-concurrency-limit", "urgent", "2", "--pool", "ops")
    run("work-queue", "pause", "urgent", "--pool", "ops")
    queues = {q["name"]: q for q in as_json(run("work-queue", "ls", "--pool", "ops", "-o", "json"))}
    assert queues["urgent"]["paused"] and queues["urgent"]["concurrency_limit"] == 2
    run("work-queue", "delete", "urgent", "--pool", "ops", "--yes")
    assert [q["name"] for q in as_json(run("work-queue", "ls", "--pool", "ops", "-o", "json"))] == ["default"]
    run("work-pool", "delete", "ops", "--yes")
    assert "ops" not in {p["name"] for p in as_json(run("work-pool", "ls", "-o", "json"))}


def test_blocks_never_print_secrets(run, tmp_path):
    data_file = tmp_path / "creds.json"
    data_file.write_text(json.dumps({"aws_access_key_id": "AKIA1", "aws_secret_access_key": SECRET}))
    outputs = [run("block", "create", "aws", "--type", "aws-credentials", "--data-file", str(data_file)).output,
               run("block", "create", "tok", "--type", "secret", "--field", f"value={SECRET}").output,
               run("block", "ls").output, run("block", "ls", "-o", "json").output,
               run("block", "inspect", "aws").output, run("block", "inspect", "tok").output]
    assert all(SECRET not in out for out in outputs)
    assert json.loads(outputs[4])["data"]["aws_secret_access_key"] == "********"
    run("block", "delete", "tok", "--yes")
    assert [b["name"] for b in as_json(run("block", "ls", "-o", "json"))] == ["aws"]


def test_api_keys_and_service_accounts(run):
    issued = as_json(run("api-key", "create", "--name", "ci", "-o", "json"))
    assert issued["key"].startswith("ppu_")
    listed = run("api-key", "ls").output
    assert "ci" in listed and issued["key"] not in listed
    run("api-key", "revoke", issued["api_key"]["id"], "--yes")
    revoked = next(k for k in as_json(run("api-key", "ls", "-o", "json")) if k["id"] == issued["api_key"]["id"])
    assert revoked["revoked_at"] is not None

    bot = as_json(run("service-account", "create", "deployer", "--role", "developer", "-o", "json"))
    assert bot["key"].startswith("ppb_") and bot["role"] == "developer"
    rotated = as_json(run("service-account", "rotate", "deployer", "--yes", "-o", "json"))
    assert rotated["key"] != bot["key"]
    rows = as_json(run("service-account", "ls", "-o", "json"))
    assert [sum(k["revoked_at"] is None for k in r["keys"]) for r in rows if r["account"]["name"] == "deployer"] == [1]
    run("service-account", "delete", "deployer", "--yes")
    assert all(r["account"]["name"] != "deployer" for r in as_json(run("service-account", "ls", "-o", "json")))


def test_login_profiles_config_and_workspaces(run, server):
    url = profiles.load()["profiles"]["local"]["PUSHPOOL_API_URL"]
    bot = as_json(run("service-account", "create", "viewer-bot", "--role", "viewer", "-o", "json"))
    run("profile", "create", "bot")
    run("profile", "use", "bot")
    run("login", "--key", bot["key"], "--url", url)
    assert profiles.load()["profiles"]["bot"]["PUSHPOOL_API_KEY"] == bot["key"]
    workspaces = as_json(run("workspace", "ls", "-o", "json"))
    assert [(w["workspace_name"], w["role"]) for w in workspaces] == [("default", "viewer")]
    view = run("config", "view").output
    assert "PUSHPOOL_API_URL" in view and bot["key"] not in view  # the key is masked
    run("config", "set", "request_timeout=12")
    assert profiles.load()["profiles"]["bot"]["PUSHPOOL_REQUEST_TIMEOUT"] == "12"
    run("config", "unset", "PUSHPOOL_REQUEST_TIMEOUT")
    assert "PUSHPOOL_REQUEST_TIMEOUT" not in profiles.load()["profiles"]["bot"]
    names = [p["name"] for p in as_json(run("profile", "ls", "-o", "json"))]
    assert names == ["local", "bot"]
    run("profile", "use", "local")
    run("profile", "delete", "bot", "--yes")
    assert list(profiles.load()["profiles"]) == ["local"]
    run("workspace", "set", "default")
    bad = run("config", "set", "colour=blue", ok=False)
    assert bad.exit_code != 0 and "unknown" in str(bad.exception)


def test_a_run_is_found_by_its_name_its_id_tail_or_a_unique_id_start(run, server):
    from pushpool.cli.flow_runs import resolve_run
    from pushpool.client import PushpoolClient
    from pushpool.control_plane.errors import InvalidInput

    run("work-pool", "create", "named", "--type", "local:push")
    with PushpoolClient() as client:
        dep = client.apply_deployment(flow_name="f", name="named", entrypoint="f.py:f", work_pool_name="named",
                                      paused=True)
        made = [client.create_flow_run(dep["id"], name=f"run-{i}",
                                       scheduled_time="2030-01-01T00:00:00+00:00") for i in range(3)]
        for target in made:
            compact = target["id"].replace("-", "")
            for reference in (target["id"], target["name"], compact[-12:], target["id"][:36]):
                assert resolve_run(client, reference)["id"] == target["id"], reference
        with pytest.raises(InvalidInput, match="matches 3 recent runs"):
            resolve_run(client, made[0]["id"][:4])  # v7 ids of one minute share their start
        with pytest.raises(InvalidInput, match="no recent run"):
            resolve_run(client, "zzzz-no-such-run")


def test_concurrency_and_collision_strategy_from_python_yaml_and_the_cli(run, server, tmp_path):
    from pushpool.client import PushpoolClient
    from pushpool.control_plane.errors import InvalidInput
    from pushpool.project_file import DeploymentSpec
    from tests.sdk.cli.conftest import write_project

    run("work-pool", "create", "limits", "--type", "local:push")
    project = tmp_path / "limits"
    write_project(project, pool="limits")
    import importlib.util

    spec = importlib.util.spec_from_file_location("greet_for_limits", project / "flows" / "greet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flow = module.greet
    applied = flow.deploy(name="capped", work_pool_name="limits", concurrency_limit=1, collision_strategy="CANCEL_NEW",
                          crash_retries=2)
    assert (applied["concurrency_limit"], applied["collision_strategy"], applied["crash_retries"]) == (
        1, "CANCEL_NEW", 2)
    with pytest.raises(InvalidInput, match="collision_strategy: 'SOMETIMES'"):
        flow.to_deployment("bad", work_pool_name="limits", collision_strategy="SOMETIMES")
    assert DeploymentSpec.model_validate({"name": "y", "entrypoint": "flows/greet.py:greet",
                                          "work_pool": {"name": "limits"},
                                          "collision_strategy": "CANCEL_NEW"}).collision_strategy == "CANCEL_NEW"
    assert DeploymentSpec.model_validate({"name": "y", "entrypoint": "flows/greet.py:greet",
                                          "work_pool": {"name": "limits"}, "crash_retries": 1}).crash_retries == 1

    out = run("deployment", "update", "greet/capped", "--concurrency-limit", "3", "--collision-strategy", "enqueue")
    assert "concurrency limit 3, collision strategy ENQUEUE, crash retries 2" in out.output
    assert "crash retries 0" in run("deployment", "update", "greet/capped", "--crash-retries", "0").output
    assert "concurrency limit none" in run("deployment", "update", "greet/capped", "--no-concurrency-limit").output
    assert "nothing to change" in str(run("deployment", "update", "greet/capped", ok=False).exception)
    run("deployment", "pause", "greet/capped")
    with PushpoolClient() as client:
        assert client.read_deployment_by_name("greet/capped")["paused"] is True
    run("deployment", "resume", "greet/capped")
    with PushpoolClient() as client:
        assert client.read_deployment_by_name("greet/capped")["paused"] is False
