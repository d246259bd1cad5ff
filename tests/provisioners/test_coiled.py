"""``--provision-infra`` for ``coiled:push``: the token ``coiled login`` saved, verified with the (fake) Coiled
API, the workspace's cloud set-up checked, stored as the pool's credentials block; idempotent; ``deprovision``
removes it."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from pushpool.provisioners.base import ProvisioningError
from pushpool.provisioners.coiled import read_login
from tests.coiled_fixtures import OTHER_TOKEN, TOKEN, UNSET_TOKEN
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.live_server import wait_for_state

pytest.importorskip("coiled")


def coiled_login(tmp_path, api, token: str, **more) -> None:
    """What `coiled login` writes: dask configuration in the config directory."""
    directory = tmp_path / "dask-config"
    directory.mkdir(exist_ok=True)
    (directory / "coiled.yaml").write_text(yaml.safe_dump(
        {"coiled": {"user": "someone", "token": token, "server": api.url, **more}}))


def test_the_token_is_read_like_the_coiled_client_reads_it(tmp_path, coiled_api, monkeypatch):
    with pytest.raises(ProvisioningError, match="coiled login"):
        read_login()
    coiled_login(tmp_path, coiled_api, TOKEN, workspace="acme-research")
    login = read_login()
    assert (login.token, login.server, login.workspace) == (TOKEN, coiled_api.url, "acme-research")
    monkeypatch.setenv("DASK_COILED__TOKEN", OTHER_TOKEN)
    assert read_login().token == OTHER_TOKEN and "DASK_COILED__TOKEN" in read_login().source


def test_provision_run_and_deprovision_a_coiled_pool(cli, live, coiled_api, tmp_path):
    coiled_login(tmp_path, coiled_api, TOKEN)
    client = live.client()
    out = cli("work-pool", "create", "vm", "--type", "coiled:push", "--provision-infra", "--dry-run")
    assert "Coiled token of ada" in out and "workspace acme" in out and "connected to AWS" in out
    assert "Dry run" in out
    assert client.read_work_pool_or_none("vm") is None and client.request("GET", client.ws("/blocks")) == []

    out = cli("work-pool", "create", "vm", "--type", "coiled:push", "--provision-infra", "--yes")
    assert "is ready" in out and "workspace acme" in out
    properties = client.read_work_pool("vm")["base_job_template"]["variables"]["properties"]
    assert properties["coiled_credentials"]["default"] == "{{ pushpool.blocks.vm-coiled }}"
    block = client.request("GET", client.ws("/blocks/vm-coiled"))
    assert block["data"] == {"token": "********", "workspace": "acme"}

    cli("work-pool", "provision-infra", "vm", "--yes", "--coiled-workspace", "acme-research")  # again
    assert [b["name"] for b in client.request("GET", client.ws("/blocks"))] == ["vm-coiled"]
    assert client.request("GET", client.ws("/blocks/vm-coiled"))["data"]["workspace"] == "acme-research"

    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl():
            print("ran on the provisioned Coiled pool")
    '''))
    from tests.fakes.coiled_api import CoiledSimulator

    dep = client.apply_deployment(flow_name="etl", name="prov", entrypoint="flows.py:etl", work_pool_name="vm",
                                  image="registry.example/flows:1")
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert run["infra_id"].startswith("acme-research/")
    simulator = CoiledSimulator(coiled_api, tmp_path)
    assert simulator.run(int(run["infra_id"].rpartition("/")[2])) == 0, simulator.output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
    assert "ran on the provisioned Coiled pool" in "\n".join(
        client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))["lines"])

    cli("work-pool", "deprovision", "vm", "--yes")
    assert client.request("GET", client.ws("/blocks")) == []
    pool = client.read_work_pool("vm")
    assert pool["provisioning"] == {} and "default" not in pool["base_job_template"]["variables"]["properties"][
        "coiled_credentials"]


def test_a_refused_token_or_an_unconnected_workspace_is_one_clear_error_and_changes_nothing(cli, live, coiled_api,
                                                                                           tmp_path):
    out = cli("work-pool", "create", "c", "--type", "coiled:push", "--provision-infra", "--dry-run", ok=False)
    assert "coiled login" in out and "\n" not in out
    cli("work-pool", "create", "c", "--type", "coiled:push")
    coiled_login(tmp_path, coiled_api, "revoked-token-123")
    out = cli("work-pool", "provision-infra", "c", "--yes", ok=False)
    assert "Coiled refused the pool's API token" in out and "\n" not in out
    coiled_login(tmp_path, coiled_api, UNSET_TOKEN)
    out = cli("work-pool", "provision-infra", "c", "--yes", ok=False)
    assert "not connected to a cloud account" in out and "coiled setup aws" in out and "\n" not in out
    coiled_login(tmp_path, coiled_api, TOKEN)
    out = cli("work-pool", "provision-infra", "c", "--yes", "--coiled-workspace", "globex", ok=False)
    assert "not a member of the workspace 'globex'" in out
    client = live.client()
    assert client.request("GET", client.ws("/blocks")) == []
