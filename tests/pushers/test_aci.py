"""``azure-container-instance:push`` with the official client against the fake Resource Manager."""

from __future__ import annotations

import pytest

from pushpool.pushers.aci import AciPusher, GroupRef, group_name
from pushpool.pushers.base import InfraState, Job, PermanentPusherError, PusherContext, TransientPusherError
from tests.azure_fixtures import RESOURCE_GROUP, SUBSCRIPTION

IMAGE = "pushpool.azurecr.io/flows:1"
RUN_ID = "0190d6a8-5a3c-7000-8000-00000000a001"


def config(**values) -> dict:
    return {"aci_credentials": {"tenant_id": "t", "client_id": "c", "client_secret": "s",
                                "subscription_id": SUBSCRIPTION},
            "resource_group_name": RESOURCE_GROUP, "location": "westeurope", "cpu": 2, "memory": 4,
            "env": {"MODE": "prod"}, **values}


def job(run_id: str = RUN_ID, attempt: int = 1, **values) -> Job:
    return Job(flow_run_id=run_id, workspace_id="ws", pool_name="aci", deployment_name="etl/nightly",
               flow_run_name="brave-fox", configuration=config(**values),
               env={"MODE": "prod", "PUSHPOOL_FLOW_RUN_ID": run_id, "PUSHPOOL_RUN_TOKEN": "run-token"}, image=IMAGE,
               labels={"pushpool.flow-run-id": run_id}, attempt=attempt)


@pytest.fixture
def pusher(tmp_path, arm_api) -> AciPusher:
    return AciPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config()))


def test_submit_creates_one_group_with_the_runner_and_the_run_token_as_a_secure_value(pusher, arm_api):
    submission = pusher.submit(job())
    ref = GroupRef.parse(submission.infra_id)
    assert (ref.subscription, ref.resource_group, ref.name) == (SUBSCRIPTION, RESOURCE_GROUP, group_name(RUN_ID))
    assert submission.console_url == f"https://portal.azure.com/#@/resource{submission.infra_id}/overview"
    group = arm_api.state.groups[submission.infra_id.lower()]
    assert group["location"] == "westeurope" and group["properties"]["restartPolicy"] == "Never"
    container = arm_api.container(submission.infra_id)
    assert container["image"] == IMAGE and container["command"] == ["pushpool-runner"]
    env = {e["name"]: e for e in container["environmentVariables"]}
    assert env["MODE"] == {"name": "MODE", "value": "prod"}
    assert env["PUSHPOOL_RUN_TOKEN"] == {"name": "PUSHPOOL_RUN_TOKEN", "secureValue": "run-token"}
    assert container["resources"]["requests"] == {"cpu": 2.0, "memoryInGB": 4.0}


def test_gpu_registry_identity_and_network_are_applied(pusher, arm_api):
    identity = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/" \
               "Microsoft.ManagedIdentity/userAssignedIdentities/pull"
    infra_id = pusher.submit(job(gpu_count=1, gpu_sku="V100", identities=[identity], subnet_ids=["/sub/net"],
                                 dns_servers=["10.0.0.10"],
                                 image_registry={"server": "pushpool.azurecr.io", "identity": identity})).infra_id
    group = arm_api.state.groups[infra_id.lower()]
    assert arm_api.container(infra_id)["resources"]["requests"]["gpu"] == {"count": 1, "sku": "V100"}
    assert group["properties"]["imageRegistryCredentials"] == [{"server": "pushpool.azurecr.io", "identity": identity}]
    assert list(group["identity"]["userAssignedIdentities"]) == [identity]
    assert group["properties"]["subnetIds"] == [{"id": "/sub/net"}]
    with pytest.raises(PermanentPusherError, match="gpu_sku"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000a002", gpu_count=1))


def test_a_resubmission_adopts_the_group_and_never_redeploys_it(pusher, arm_api):
    first = pusher.submit(job())
    arm_api.set_state(first.infra_id, "Running")
    assert pusher.submit(job(attempt=2)).infra_id == first.infra_id
    assert arm_api.state.created == [first.infra_id] and arm_api.calls.count("put_group") == 1
    assert pusher.status([first.infra_id])[first.infra_id].state is InfraState.RUNNING


def test_status_explains_how_a_group_ended(pusher, arm_api):
    ids = [pusher.submit(job(run_id=f"0190d6a8-5a3c-7000-8000-00000000b00{i}")).infra_id for i in range(4)]
    arm_api.set_state(ids[1], "Terminated", 0, "Completed")
    arm_api.set_state(ids[2], "Terminated", 3, "Error")
    arm_api.set_state(ids[3], "Waiting", events=[{"name": "Failed", "type": "Warning", "count": 3,
                                                  "message": f"Failed to pull image \"{IMAGE}\": unauthorized"}])
    gone = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/" \
           "Microsoft.ContainerInstance/containerGroups/gone"
    statuses = pusher.status([*ids, gone])
    assert statuses[ids[0]].state is InfraState.PENDING
    assert statuses[ids[1]].exit_code == 0
    assert statuses[ids[2]].exit_code == 3 and statuses[ids[2]].reason == "exit code 3 (Error)"
    assert statuses[ids[3]].exit_code == 1 and f"image pull failed for '{IMAGE}'" in statuses[ids[3]].reason
    assert statuses[gone].state is InfraState.MISSING


def test_cancel_stops_then_deletes_and_cleanup_deletes_unless_kept(tmp_path, pusher, arm_api):
    infra_id = pusher.submit(job()).infra_id
    pusher.cancel(infra_id)
    assert arm_api.state.stopped == [infra_id] and arm_api.state.deleted == [infra_id]
    pusher.cancel(infra_id)  # already gone
    other = pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000c001")).infra_id
    AciPusher(PusherContext(state_dir=tmp_path, api_url="http://x",
                            pool_config=config(keep_container_group=True))).cleanup(other)
    assert other.lower() in arm_api.state.groups
    pusher.cleanup(other)
    assert other.lower() not in arm_api.state.groups


def test_errors_name_the_fix(pusher, arm_api):
    arm_api.inject("put_group", 429, "Too many requests", code="TooManyRequests", headers={"Retry-After": "0"},
                   count=10)
    with pytest.raises(TransientPusherError, match="429"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d001"))
    arm_api.injected.clear()
    arm_api.inject("put_group", 409, "Resource quota reached", code="ContainerGroupQuotaReached")
    with pytest.raises(TransientPusherError, match="about 100 creates per 5 minutes"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d002"))
    arm_api.inject("put_group", 403, "does not have authorization", code="AuthorizationFailed")
    with pytest.raises(PermanentPusherError, match="Contributor on the resource group"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d003"))
    with pytest.raises(PermanentPusherError, match="resource_group_name"):
        pusher.submit(job(resource_group_name=None))


# ---------------------------------------------------------------------------------------------------------------
# Issue 23: ACI's creates take minutes (image pull included) and can end Failed for a while (capacity); the fake
# now does both, and these failed against it before the pusher changed.


def test_a_create_that_takes_200_seconds_does_not_hold_up_the_submission(pusher, arm_api):
    import threading

    now = [1000.0]
    arm_api.clock = lambda: now[0]
    arm_api.create_seconds = 200  # longer than a Lambda tick (75 s) or a submission lease (120 s)
    answered: list = []
    thread = threading.Thread(target=lambda: answered.append(pusher.submit(job())), daemon=True)
    thread.start()
    thread.join(30)  # the old pusher waited for the deployment: here it would still be waiting
    assert answered, "submit waited for Azure to finish creating the group"
    infra_id = answered[0].infra_id
    assert arm_api.state.groups[infra_id.lower()]["properties"]["provisioningState"] == "Creating"
    assert pusher.status([infra_id])[infra_id].state is InfraState.PENDING  # the reconciler watches it
    now[0] += 201
    arm_api.set_state(infra_id, "Running")
    assert pusher.status([infra_id])[infra_id].state is InfraState.RUNNING


def test_a_group_that_failed_to_deploy_is_made_again_not_adopted(pusher, arm_api):
    arm_api.failing_creates = 1
    first = pusher.submit(job()).infra_id
    status = pusher.status([first])[first]
    assert status.finished and "failed to deploy: The requested resource is not available" in status.reason
    with pytest.raises(TransientPusherError, match="failed and is being deleted"):
        pusher.submit(job(attempt=2))  # not adopted: the failed group is deleted
    assert arm_api.state.deleted == [first]
    again = pusher.submit(job(attempt=3)).infra_id
    assert again == first and arm_api.state.groups[again.lower()]["properties"]["provisioningState"] == "Succeeded"
    assert len(arm_api.state.created) == 2 and len(arm_api.groups_of_run(RUN_ID)) == 1
