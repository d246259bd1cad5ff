"""Provision an ecs:push pool into moto with the CLI, run a flow on it, and take it all down again."""

from __future__ import annotations

import textwrap

from typer.testing import CliRunner

from pushpool import profiles
from pushpool.cli.main import app
from tests.e2e.test_ecs_loop import IMAGE, wait_for_infra
from tests.fakes.aws import REGION, ContainerSimulator, account_snapshot
from tests.live_server import wait_for_state


def test_provision_run_and_deprovision(live, aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
        return result.output

    before = account_snapshot(aws)
    out = cli("work-pool", "create", "ecs", "--type", "ecs:push", "--provision-infra", "--region", REGION, "--dry-run")
    assert "IAM role pushpool-ecs-execution" in out and "Dry run" in out
    assert account_snapshot(aws) == before
    client = live.client()
    assert client.read_work_pool_or_none("ecs") is None

    out = cli("work-pool", "create", "ecs", "--type", "ecs:push", "--provision-infra", "--region", REGION, "--yes")
    assert "is ready" in out
    pool = client.read_work_pool("ecs")
    properties = pool["base_job_template"]["variables"]["properties"]
    assert properties["cluster"]["default"] == "pushpool-ecs"
    assert properties["aws_credentials"]["default"] == "{{ pushpool.blocks.ecs-aws }}"
    assert properties["security_groups"]["default"] and properties["subnets"]["default"]
    block = client.request("GET", client.ws("/blocks/ecs-aws"))
    assert block["data"]["aws_secret_access_key"] == "********"
    assert profiles.load()["profiles"]["local"]["PUSHPOOL_BUILD_NAMESPACE"].endswith("/pushpool/ecs")
    provisioned = account_snapshot(aws)

    out = cli("work-pool", "provision-infra", "ecs", "--yes")
    assert account_snapshot(aws) == provisioned  # idempotent: nothing new, no second access key

    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl():
            print("ran on the provisioned pool")
    '''))
    dep = client.apply_deployment(flow_name="etl", name="prov", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE)
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert ":cluster/pushpool-ecs" in run["infra_id"] or "/pushpool-ecs/" in run["infra_id"]
    simulator = ContainerSimulator(aws, tmp_path)
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"

    out = cli("work-pool", "deprovision", "ecs", "--yes")
    assert "Removed what pushpool created" in out
    assert account_snapshot(aws) == before
    assert client.request("GET", client.ws("/blocks")) == []
    assert client.read_work_pool("ecs")["provisioning"] == {}
