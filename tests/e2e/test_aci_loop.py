"""The full loop through ``azure-container-instance:push``: the control plane creates a container group on
the fake Resource Manager, a simulator runs exactly the container it describes, and the run completes
through the API; a non-zero exit or an image pull failure crashes the run, cancelling deletes the group,
and a control plane that dies mid-submit never leaves a second group."""

from __future__ import annotations

import textwrap

import pytest

from pushpool.pushers.aci import AciPusher
from tests.azure_fixtures import RESOURCE_GROUP, SUBSCRIPTION
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.fakes.crashes import die_after_first_submit, dispatch_crash_then_restart
from tests.live_server import wait_for_state, wait_until

pytest.importorskip("azure.mgmt.containerinstance")
from tests.fakes.azure_api import AciSimulator  # noqa: E402

IMAGE = "pushpool.azurecr.io/flows:1"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def aci_template(**defaults) -> dict:
    template = AciPusher.default_job_template()
    values = {"aci_credentials": "{{ pushpool.blocks.azure }}", "resource_group_name": RESOURCE_GROUP,
              "location": "westeurope", **defaults}
    for name, value in values.items():
        template["variables"]["properties"][name]["default"] = value
    return template


def add_block(create) -> None:
    create({"name": "azure", "type": "azure-credentials", "data": {
        "tenant_id": "t", "client_id": "c", "client_secret": "s", "subscription_id": SUBSCRIPTION}})


@pytest.fixture
def aci(live, arm_api, tmp_path):
    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl(rows: int = 3):
            print(f"loaded {rows} rows")
    '''))
    client = live.client()
    add_block(lambda body: client.request("POST", client.ws("/blocks"), json=body))
    client.create_work_pool("aci", "azure-container-instance:push", base_job_template=aci_template())
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl", work_pool_name="aci",
                                  image=IMAGE, parameters={"rows": 7})
    return client, dep, AciSimulator(arm_api, tmp_path)


def test_a_run_completes_on_aci_with_its_logs_and_the_group_is_deleted(aci, arm_api, live):
    client, dep, simulator = aci
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert run["console_url"].startswith("https://portal.azure.com/#@/resource/subscriptions/")
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
    assert page["supported"] and any("loaded 7 rows" in line for line in page["lines"])
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "COMPLETED"
    wait_until(lambda: run["infra_id"] in arm_api.state.deleted, "the group deleted")


def test_a_non_zero_exit_ends_the_run_crashed(aci, arm_api):
    client, dep, _ = aci
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    arm_api.set_state(run["infra_id"], "Terminated", 2, "Error")
    done = wait_for_state(client, run["id"], FINAL)
    assert done["state"]["type"] == "CRASHED" and "exit code 2" in done["state"]["message"]


def test_an_image_pull_failure_ends_the_run_crashed_naming_the_image(aci, arm_api):
    client, dep, _ = aci
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    arm_api.set_state(run["infra_id"], "Waiting", events=[
        {"name": "Failed", "type": "Warning", "message": f"Failed to pull image \"{IMAGE}\": manifest unknown"}])
    done = wait_for_state(client, run["id"], FINAL)
    assert done["state"]["type"] == "CRASHED" and f"image pull failed for '{IMAGE}'" in done["state"]["message"]


def test_cancelling_a_run_deletes_its_group(aci, arm_api):
    client, dep, _ = aci
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    arm_api.set_state(run["infra_id"], "Running")
    client.cancel_flow_run(run["id"])
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "CANCELLED"
    assert run["infra_id"] in arm_api.state.deleted


def test_a_resubmit_after_a_crash_mid_submit_creates_no_second_group(api, ctx, clock, arm_api, monkeypatch):
    add_block(lambda body: api.ok("POST", api.ws("/blocks"), json=body))
    api.pool("aci", type="azure-container-instance:push", base_job_template=aci_template())
    dep = api.deployment("nightly", flow_name="etl", pool="aci", image=IMAGE)
    run_id = api.run(dep["id"])["id"]
    monkeypatch.setattr(AciPusher, "submit", die_after_first_submit(AciPusher.submit))
    dispatch_crash_then_restart(ctx, clock)
    assert len(arm_api.groups_of_run(run_id)) == 1 and len(arm_api.state.created) == 1
    assert api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["infra_id"] == arm_api.groups_of_run(run_id)[0]


def test_a_quota_error_is_retried_and_shown_on_the_run_while_it_waits(api, ctx, clock, arm_api):
    from pushpool.control_plane.services.dispatcher import Dispatcher

    add_block(lambda body: api.ok("POST", api.ws("/blocks"), json=body))
    api.pool("aci", type="azure-container-instance:push", base_job_template=aci_template())
    dep = api.deployment("nightly", flow_name="etl", pool="aci", image=IMAGE)
    run_id = api.run(dep["id"])["id"]
    arm_api.inject("put_group", 409, "The container group quota was reached.", code="ContainerGroupQuotaReached")
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    waiting = api.ok("GET", api.ws(f"/flow_runs/{run_id}"))
    assert waiting["state"]["type"] == "PENDING" and waiting["infra_id"] is None
    assert "about 100 creates per 5 minutes" in waiting["submission_error"]
    clock.advance(600)
    dispatcher.run_once()
    dispatcher.close()
    submitted = api.ok("GET", api.ws(f"/flow_runs/{run_id}"))
    assert submitted["infra_id"] == arm_api.groups_of_run(run_id)[0] and submitted["submission_error"] is None
