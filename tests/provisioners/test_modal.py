"""``--provision-infra`` for ``modal:push``: the user's Modal token, verified with the (fake) Modal API,
stored as the pool's credentials block; idempotent; ``deprovision`` removes it."""

from __future__ import annotations

import textwrap

import pytest

from pushpool.provisioners.base import ProvisioningError
from pushpool.provisioners.modal import read_token
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.live_server import wait_for_state
from tests.modal_fixtures import TOKEN


def write_profiles(path, **profiles) -> None:
    lines = []
    for name, values in profiles.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value!r}" if not isinstance(value, bool) else f"{key} = {str(value).lower()}"
                  for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")


def test_the_token_is_read_like_the_modal_cli_reads_it(tmp_path, monkeypatch):
    path = tmp_path / "modal.toml"
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(path))
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProvisioningError, match="modal token new"):
        read_token()
    write_profiles(path, work={"token_id": "ak-work", "token_secret": "as-work"},
                   home={"token_id": "ak-home", "token_secret": "as-home", "active": True})
    assert read_token().token_id == "ak-home"  # the active profile
    assert read_token("work").token_id == "ak-work"
    with pytest.raises(ProvisioningError, match="no Modal profile 'nope'.*home, work"):
        read_token("nope")
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-env")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-env")
    assert read_token().token_id == "ak-env" and read_token("work").token_id == "ak-work"


def test_provision_run_and_deprovision_a_modal_pool(cli, live, modal_api, tmp_path):
    write_profiles(tmp_path / "modal.toml", default={"token_id": TOKEN[0], "token_secret": TOKEN[1]})
    client = live.client()
    out = cli("work-pool", "create", "gpu", "--type", "modal:push", "--provision-infra", "--dry-run")
    assert f"Modal token {TOKEN[0]}" in out and "workspace acme" in out and "Dry run" in out
    assert client.read_work_pool_or_none("gpu") is None and client.request("GET", client.ws("/blocks")) == []

    out = cli("work-pool", "create", "gpu", "--type", "modal:push", "--provision-infra", "--yes")
    assert "is ready" in out and "pushpool-gpu" in out
    properties = client.read_work_pool("gpu")["base_job_template"]["variables"]["properties"]
    assert properties["modal_credentials"]["default"] == "{{ pushpool.blocks.gpu-modal }}"
    assert properties["app_name"]["default"] == "pushpool-gpu"
    block = client.request("GET", client.ws("/blocks/gpu-modal"))
    assert block["data"] == {"token_id": TOKEN[0], "token_secret": "********"}

    cli("work-pool", "provision-infra", "gpu", "--yes")  # again: the same block, nothing new
    assert [b["name"] for b in client.request("GET", client.ws("/blocks"))] == ["gpu-modal"]

    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl():
            print("ran on the provisioned Modal pool")
    '''))
    from tests.fakes.modal_api import ModalSimulator

    dep = client.apply_deployment(flow_name="etl", name="prov", entrypoint="flows.py:etl", work_pool_name="gpu",
                                  image="registry.example/flows:1")
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    simulator = ModalSimulator(modal_api, tmp_path)
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
    assert modal_api.state.apps == {("main", "pushpool-gpu"): modal_api.sandbox(run["infra_id"]).app_id}

    out = cli("work-pool", "deprovision", "gpu", "--yes")
    assert client.request("GET", client.ws("/blocks")) == []
    pool = client.read_work_pool("gpu")
    assert pool["provisioning"] == {} and "default" not in pool["base_job_template"]["variables"]["properties"][
        "modal_credentials"]


def test_a_refused_or_missing_token_is_one_clear_error_and_changes_nothing(cli, live, modal_api, tmp_path):
    out = cli("work-pool", "create", "m", "--type", "modal:push", "--provision-infra", "--dry-run", ok=False)
    assert "modal token new" in out and "\n" not in out
    write_profiles(tmp_path / "modal.toml", default={"token_id": "ak-revoked", "token_secret": "as-old"})
    out = cli("work-pool", "provision-infra", "m", "--yes", ok=False)  # no such pool yet
    cli("work-pool", "create", "m", "--type", "modal:push")
    out = cli("work-pool", "provision-infra", "m", "--yes", ok=False)
    assert "Modal refused the token" in out and "\n" not in out
    client = live.client()
    assert client.request("GET", client.ws("/blocks")) == []
