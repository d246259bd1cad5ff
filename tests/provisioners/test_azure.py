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


def test_the_block_names_the_real_tenant_and_provisioning_waits_for_the_role_to_propagate(azure_api):
    """Issue 23: after a plain 'az login' (no AZURE_TENANT_ID) the block used to say 'organizations', which Entra
    refuses for a service principal's secret; and the Contributor assignment takes time to propagate."""
    from pushpool.provisioners.azure import AzureProvisioner
    from pushpool.provisioners.base import StepAction
    from tests.fakes.azure_api import TENANT

    azure_api.propagation_seconds = 1.5
    plan = AzureProvisioner().plan("fresh", {"subscription": SUBSCRIPTION, "region": "westeurope"})
    assert {s.key: s.action for s in plan.steps}["verify"] is StepAction.CHECK
    result = AzureProvisioner().apply(plan, lambda *a: None)
    assert result.credentials_block["data"]["tenant_id"] == TENANT
    assert any(why.startswith(result.credentials_block["data"]["client_id"]) for why in azure_api.refused)  # waited
    AzureProvisioner().destroy("fresh", {"account": SUBSCRIPTION, "created": result.created}, lambda *a: None)


def test_a_block_with_a_shared_tenant_is_refused_with_the_fix(azure_api):
    import pytest

    from pushpool.pushers.aci import credential_for
    from pushpool.pushers.base import PermanentPusherError

    with pytest.raises(PermanentPusherError, match="tenant_id 'organizations'.*az account show --query tenantId"):
        credential_for({"tenant_id": "organizations", "client_id": "c", "client_secret": "s"})


def test_names_from_any_pool_name_fit_azure():
    import re

    from pushpool.provisioners.azure import names

    for pool in ("etl", "My.Pool", "x" * 100, "a_b-c.d"):
        n = names(pool, SUBSCRIPTION)
        assert re.fullmatch(r"[\w.()-]{1,90}", n["group"]) and not n["group"].endswith(".")
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}", n["identity"]), n["identity"]
        assert re.fullmatch(r"[a-z0-9]{5,50}", n["registry"]) and len(n["app"]) <= 120
    assert names("etl", SUBSCRIPTION)["group"] == "pushpool-etl"
    assert names("My.Pool", SUBSCRIPTION)["identity"] != names("My-Pool", SUBSCRIPTION)["identity"]


def test_a_pool_with_a_dot_in_its_name_provisions(azure_api):
    from pushpool.provisioners.azure import AzureProvisioner

    azure_api.propagation_seconds = 0
    plan = AzureProvisioner().plan("team.data", {"subscription": SUBSCRIPTION, "region": "westeurope"})
    result = AzureProvisioner().apply(plan, lambda *a: None)  # the fake refuses a '.' in an identity's name
    assert result.created["identity"].endswith(names("team.data", SUBSCRIPTION)["identity"])
