"""``--provision-infra`` for ``cloud-run:push`` through the CLI, against the fake Google APIs: plan first,
dry run, idempotent, a flow run on what it made, and ``deprovision`` removing exactly that."""

from __future__ import annotations

import textwrap

from pushpool import profiles
from pushpool.provisioners.gcp import ROLES, account_id
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.gcp_fixtures import PROJECT
from tests.live_server import wait_for_state

REGION = "europe-west1"


def test_account_ids_fit_google_limits():
    assert account_id("etl") == "pushpool-etl"
    long = account_id("a-very-long-pool-name-for-the-data-team")
    assert 6 <= len(long) <= 30 and long.startswith("pushpool-") and long != account_id("a-very-long-pool-name-x")


def test_provision_run_and_deprovision_a_cloud_run_pool(cli, live, gcp_api, tmp_path):
    before = gcp_api.snapshot()
    out = cli("work-pool", "create", "cr", "--type", "cloud-run:push", "--provision-infra", "--region", REGION,
              "--dry-run")
    assert "API run.googleapis.com" in out and "service account pushpool-cr@" in out and "Dry run" in out
    assert gcp_api.snapshot() == before
    client = live.client()
    assert client.read_work_pool_or_none("cr") is None

    gcp_api.gcp.stale_etag_once = True  # someone changes the project's policy between our read and write
    out = cli("work-pool", "create", "cr", "--type", "cloud-run:push", "--provision-infra", "--region", REGION,
              "--yes")
    assert "is ready" in out and gcp_api.gcp.stale_etag_once is False  # the stale write was read again
    email = f"pushpool-cr@{PROJECT}.iam.gserviceaccount.com"
    made = gcp_api.snapshot()
    assert made["accounts"] == sorted([email]) and len(made["keys"]) == 1
    assert all(f"{PROJECT}/{s}" in made["enabled"] for s in ("run.googleapis.com", "artifactregistry.googleapis.com"))
    assert all(f"serviceAccount:{email}" in gcp_api.members_of(role) for role in ROLES)
    assert made["repositories"] == [f"projects/{PROJECT}/locations/{REGION}/repositories/pushpool"]
    properties = client.read_work_pool("cr")["base_job_template"]["variables"]["properties"]
    assert properties["credentials"]["default"] == "{{ pushpool.blocks.cr-gcp }}"
    assert (properties["project"]["default"], properties["region"]["default"]) == (PROJECT, REGION)
    assert properties["service_account_name"]["default"] == email
    assert client.request("GET", client.ws("/blocks/cr-gcp"))["data"]["service_account_info"] == "********"
    assert profiles.load()["profiles"]["local"]["PUSHPOOL_BUILD_NAMESPACE"] == (
        f"{REGION}-docker.pkg.dev/{PROJECT}/pushpool")

    cli("work-pool", "provision-infra", "cr", "--yes")
    assert gcp_api.snapshot() == made  # idempotent: nothing new, no second key

    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl():
            print("ran on the provisioned Cloud Run pool")
    '''))
    from tests.fakes.cloud_run_api import CloudRunSimulator

    dep = client.apply_deployment(flow_name="etl", name="prov", entrypoint="flows.py:etl", work_pool_name="cr",
                                  image=f"{REGION}-docker.pkg.dev/{PROJECT}/pushpool/etl:1")
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert email in gcp_api.state.callers  # the control plane used the key provisioning made
    simulator = CloudRunSimulator(gcp_api, tmp_path)
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"

    out = cli("work-pool", "deprovision", "cr", "--yes")
    after = gcp_api.snapshot()
    assert after["accounts"] == before["accounts"] and after["keys"] == [] and after["bindings"] == []
    assert after["repositories"] == [] and client.request("GET", client.ws("/blocks")) == []


def test_no_google_login_is_one_clear_error(cli, gcp_api, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    out = cli("work-pool", "create", "cr", "--type", "cloud-run:push", "--provision-infra", "--dry-run", ok=False)
    assert "gcloud auth application-default login" in out


def test_pool_names_that_change_keep_a_digest():
    assert account_id("My.Pool") != account_id("my-pool") and account_id("my-pool") == "pushpool-my-pool"
    for pool in ("My.Pool", "x" * 100, "9lives", "a_b"):
        found = account_id(pool)
        assert 6 <= len(found) <= 30 and found[0].isalpha() and found[-1].isalnum() and found == found.lower()


def test_provisioning_waits_for_iam_to_know_the_new_account_and_its_roles(gcp_api):
    """Issue 23: a new service account is unknown to a project policy for a while (400), and its roles take a
    while to take effect (403); the provisioner waits through both, so the first run does not crash."""
    from pushpool.provisioners.base import StepAction
    from pushpool.provisioners.gcp import GcpProvisioner

    gcp_api.propagation_seconds = 2.0
    plan = GcpProvisioner().plan("slow", {"region": REGION, "project": PROJECT})
    assert {s.key: s.action for s in plan.steps}["verify"] is StepAction.CHECK
    result = GcpProvisioner().apply(plan, lambda *a: None)
    email = f"pushpool-slow@{PROJECT}.iam.gserviceaccount.com"
    assert f"policy naming {email}" in gcp_api.refused  # the binding was refused, waited for, then made
    assert any(why.startswith(f"{email} on /v2/") for why in gcp_api.refused)  # the key was refused, waited for
    assert all(f"serviceAccount:{email}" in gcp_api.members_of(role) for role in ROLES)
    assert result.credentials_block["data"]["service_account_info"]
