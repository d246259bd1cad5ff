"""``--provision-infra`` for ``azure-container-instance:push`` through the CLI, against fake Resource Manager
and Microsoft Graph: plan first, dry run, idempotent, a flow run on what it made, ``deprovision``."""

from __future__ import annotations

import textwrap

from pushpool import profiles
from pushpool.provisioners.azure import ACR_PULL, CONTRIBUTOR, names
from tests.azure_fixtures import SUBSCRIPTION
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.live_server import wait_for_state


def test_provision_run_and_deprovision_an_aci_pool(cli, live, azure_api, tmp_path):
    n = names("aci", SUBSCRIPTION)
    before = azure_api.snapshot()
    out = cli("work-pool", "create", "aci", "--type", "azure-container-instance:push", "--provision-infra",
              "--subscription", SUBSCRIPTION, "--region", "westeurope", "--dry-run")
    assert f"resource group {n['group']}" in out and f"container registry {n['registry']}" in out
    assert azure_api.snapshot() == before
    client = live.client()

    out = cli("work-pool", "create", "aci", "--type", "azure-container-instance:push", "--provision-infra",
              "--subscription", SUBSCRIPTION, "--region", "westeurope", "--yes")
    assert "is ready" in out
    made = azure_api.snapshot()
    assert len(made["applications"]) == 1 and len(made["servicePrincipals"]) == 1 and len(made["secrets"]) == 1
    group = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{n['group']}"
    assert group in made["resources"]
    identity = azure_api.resources[f"{group}/providers/microsoft.managedidentity/userassignedidentities/"
                                   f"{n['identity']}"]
    sp = next(iter(azure_api.graph["servicePrincipals"].values()))
    assert azure_api.role_assignments() == sorted([(CONTRIBUTOR, sp["id"]),
                                                   (ACR_PULL, identity["properties"]["principalId"])])
    properties = client.read_work_pool("aci")["base_job_template"]["variables"]["properties"]
    assert properties["aci_credentials"]["default"] == "{{ pushpool.blocks.aci-azure }}"
    assert properties["resource_group_name"]["default"] == n["group"]
    assert properties["image_registry"]["default"] == {"server": f"{n['registry']}.azurecr.io",
                                                       "identity": identity["id"]}
    block = client.request("GET", client.ws("/blocks/aci-azure"))["data"]
    assert block["client_secret"] == "********" and block["subscription_id"] == SUBSCRIPTION
    assert profiles.load()["profiles"]["local"]["PUSHPOOL_BUILD_NAMESPACE"] == f"{n['registry']}.azurecr.io"

    cli("work-pool", "provision-infra", "aci", "--yes")
    assert azure_api.snapshot() == made  # idempotent: no second app, secret, registry or assignment

    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl():
            print("ran on the provisioned ACI pool")
    '''))
    from tests.fakes.azure_api import AciSimulator

    dep = client.apply_deployment(flow_name="etl", name="prov", entrypoint="flows.py:etl", work_pool_name="aci",
                                  image=f"{n['registry']}.azurecr.io/etl:1")
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    group_json = azure_api.state.groups[run["infra_id"].lower()]
    assert group_json["properties"]["imageRegistryCredentials"][0]["identity"] == identity["id"]
    simulator = AciSimulator(azure_api, tmp_path)
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"

    out = cli("work-pool", "deprovision", "aci", "--yes")
    assert "Tearing down" in out and "(deleted)" in out and "(create)" not in out and "Provisioning" not in out
    after = azure_api.snapshot()
    assert after["applications"] == [] and after["servicePrincipals"] == []
    assert not [r for r in after["resources"] if r.startswith(group)]
    assert client.request("GET", client.ws("/blocks")) == []


def test_no_subscription_is_one_clear_error(cli, azure_api):
    out = cli("work-pool", "create", "aci", "--type", "azure-container-instance:push", "--provision-infra",
              "--dry-run", ok=False)
    assert "--subscription" in out and "\n" not in out
