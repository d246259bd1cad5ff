"""``coiled:push`` with the real ``coiled`` client against the fake Coiled API (tests/fakes/coiled_api.py)."""

from __future__ import annotations

import pytest

from pushpool.control_plane.errors import InvalidInput
from pushpool.pushers.base import InfraState, Job, PermanentPusherError, PusherContext, TransientPusherError
from pushpool.pushers.coiled import CoiledPusher, classify, cluster_name, translate
from pushpool.pushers.coiled_template import check_job_variables
from tests.coiled_fixtures import OTHER_TOKEN, TOKEN, UNSET_TOKEN

pytest.importorskip("coiled")

IMAGE = "registry.example/flows:1"
RUN_ID = "0190d6a8-5a3c-7000-8000-00000000a001"


def config(token=TOKEN, **values) -> dict:
    defaults = {"coiled_credentials": {"token": token}, "cpu": 2, "memory": "8GB", "max_runtime_seconds": 600}
    return {**defaults, **values}


def job(run_id: str = RUN_ID, attempt: int = 1, crash_attempt: int = 0, **values) -> Job:
    return Job(flow_run_id=run_id, workspace_id="ws", pool_name="coiled", deployment_name="etl/nightly",
               flow_run_name="brave-fox", configuration=config(**values),
               env={"PUSHPOOL_FLOW_RUN_ID": run_id, "PUSHPOOL_RUN_TOKEN": "run-token"}, image=IMAGE,
               labels={"pushpool.flow-run-id": run_id, "pushpool.work-pool": "coiled"}, attempt=attempt,
               crash_attempt=crash_attempt)


@pytest.fixture
def pusher(tmp_path, coiled_api) -> CoiledPusher:
    return CoiledPusher(PusherContext(state_dir=tmp_path, api_url="http://127.0.0.1:1", pool_config=config()))


def cluster_of(api, infra_id: str):
    return api.cluster(int(infra_id.rpartition("/")[2]))


def test_submit_makes_one_batch_job_on_its_own_cluster_with_the_runner_and_the_run_token_as_secret(pusher,
                                                                                                 coiled_api):
    submission = pusher.submit(job())
    cluster = cluster_of(coiled_api, submission.infra_id)
    spec = coiled_api.job_of(cluster.cluster_id).spec
    assert submission.infra_id == f"acme/{cluster.cluster_id}"
    assert submission.console_url == f"{coiled_api.url}/clusters/{cluster.cluster_id}"
    assert cluster.name == cluster_name(RUN_ID) and cluster.workspace == "acme" and cluster.token == TOKEN
    assert spec["user_command"] == "pushpool-runner"
    assert spec["secret_env_vars"] == {"PUSHPOOL_FLOW_RUN_ID": RUN_ID, "PUSHPOOL_RUN_TOKEN": "run-token"}
    assert spec["env_vars"] == {}  # nothing of the run's environment is stored by Coiled
    assert spec["job_timeout_seconds"] == 600
    assert spec["workdir"] is None  # the image's own working directory, where the flow's code is
    assert cluster.tags["pushpool.flow-run-id"] == RUN_ID and cluster.tags["flow-run-id"] == RUN_ID
    assert cluster.request["extra_user_container"] == IMAGE
    # cpu 2 / memory 8GB: Coiled chose a VM type with those (the client asked the API which)
    assert cluster.request["scheduler_instance_types"] == ["m6i.large"]


def test_vm_options_reach_coiled_as_its_own_client_sends_them(pusher, coiled_api):
    spot = cluster_of(coiled_api, pusher.submit(job(spot_policy="spot_with_fallback", region="us-west-2")).infra_id)
    assert spot.request["options"]["spot"] is True and spot.request["options"]["spot_on_demand_fallback"] is True
    assert spot.request["options"]["region_name"] == "us-west-2"
    typed = cluster_of(coiled_api, pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000a002", cpu=None,
                                                     memory=None, vm_type="m6i.2xlarge")).infra_id)
    assert typed.request["scheduler_instance_types"] == ["m6i.2xlarge"]
    arm = cluster_of(coiled_api, pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000a003", arm=True))
                     .infra_id)
    assert arm.request["scheduler_instance_types"] == ["m7g.large"]


def test_labels_become_tags_the_cloud_takes(pusher, coiled_api):
    labelled = job()
    labelled = Job(**{**labelled.__dict__, "labels": {**labelled.labels, "team": "données, ünd so", "k" * 200: "v"}})
    cluster = cluster_of(coiled_api, pusher.submit(labelled).infra_id)
    assert cluster.tags["team"] == "donn_es_ _nd so" and cluster.tags["k" * 128] == "v"


def test_a_software_environment_instead_of_an_image(pusher, coiled_api):
    coiled_api.state.software[("acme", "etl-env")] = {"id": 5, "name": "etl-env"}
    cluster = cluster_of(coiled_api, pusher.submit(job(software="etl-env")).infra_id)
    assert cluster.request["env_name"] == "etl-env" and cluster.request["extra_user_container"] is None
    # where a software environment made by flow.deploy carries the project (else the working directory)
    assert coiled_api.job_of(cluster.cluster_id).env["PUSHPOOL_PROJECT_PACKAGE"] == "pushpool_project"
    with pytest.raises(PermanentPusherError, match="software environment 'nope'.*not found"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000a004", software="nope"))


def test_a_resubmission_adopts_the_run_cluster_instead_of_starting_another(pusher, coiled_api):
    first = pusher.submit(job())
    assert pusher.submit(job(attempt=2)).infra_id == first.infra_id
    assert len(coiled_api.clusters_named(cluster_name(RUN_ID))) == 1
    assert len(coiled_api.state.jobs) == 1  # looked up before any job was made
    # a crash retry gets a cluster of its own, also found again
    retry = pusher.submit(job(attempt=3, crash_attempt=1))
    assert retry.infra_id != first.infra_id
    assert pusher.submit(job(attempt=4, crash_attempt=1)).infra_id == retry.infra_id


def test_status_explains_how_a_job_ended(pusher, coiled_api):
    ids = [pusher.submit(job(run_id=f"0190d6a8-5a3c-7000-8000-00000000b00{i}")).infra_id for i in range(7)]
    cluster_ids = [int(i.rpartition("/")[2]) for i in ids]
    coiled_api.begin(cluster_ids[1])
    coiled_api.finish(cluster_ids[2], 0)
    coiled_api.finish(cluster_ids[3], 3)
    coiled_api.finish(cluster_ids[4], 137, cluster_state="error", reason="Instance was terminated: out of memory")
    coiled_api.finish(cluster_ids[5], 1, cluster_state="error", reason="Spot instance interrupted by AWS")
    with coiled_api._lock:
        coiled_api.cluster(cluster_ids[6]).state = "error"
        coiled_api.cluster(cluster_ids[6]).reason = "Failed to pull image registry.example/flows:1: unauthorized"
    statuses = pusher.status([*ids, "acme/999999"])
    assert statuses[ids[0]].state is InfraState.PENDING
    assert statuses[ids[1]].state is InfraState.RUNNING
    assert statuses[ids[2]].state is InfraState.EXITED and statuses[ids[2]].exit_code == 0
    assert statuses[ids[3]].exit_code == 3 and statuses[ids[3]].reason == "exit code 3"
    assert "out of memory" in statuses[ids[4]].reason
    assert "spot VM was reclaimed" in statuses[ids[5]].reason
    assert statuses[ids[6]].exit_code == 1 and "image could not be pulled" in statuses[ids[6]].reason
    assert "unauthorized" in statuses[ids[6]].reason
    assert statuses["acme/999999"].state is InfraState.MISSING


def test_cancel_stops_the_cluster_and_cleanup_stops_one_still_up(pusher, coiled_api):
    infra_id = pusher.submit(job())
    coiled_api.begin(cluster_of(coiled_api, infra_id.infra_id).cluster_id)
    pusher.cancel(infra_id.infra_id)
    cluster = cluster_of(coiled_api, infra_id.infra_id)
    assert cluster.state == "stopped" and cluster.reason == "cancelled in pushpool"
    assert pusher.status([infra_id.infra_id])[infra_id.infra_id].exit_code == 137
    pusher.cancel("acme/999999")  # already gone: nothing to do
    left_up = pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000c001")).infra_id
    pusher.cleanup(left_up)
    assert cluster_of(coiled_api, left_up).state == "stopped"


def test_logs_are_read_from_coiled_and_followed_with_a_cursor(pusher, coiled_api):
    infra_id = pusher.submit(job()).infra_id
    coiled_api.finish(cluster_of(coiled_api, infra_id).cluster_id, 0, output="one\ntwo\nthree")
    page = pusher.logs(infra_id)
    assert page.lines == ["one", "two", "three"]
    assert pusher.logs(infra_id, cursor=page.cursor).lines == []
    assert pusher.logs(infra_id, tail=1).lines == ["three"]


def test_each_token_is_used_for_its_own_pool_and_cannot_reach_another_workspace(tmp_path, coiled_api):
    one = CoiledPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config()))
    two = CoiledPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config(OTHER_TOKEN)))
    a = one.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d001"))
    b = two.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d002", token=OTHER_TOKEN))
    assert cluster_of(coiled_api, a.infra_id).token == TOKEN and a.infra_id.startswith("acme/")
    assert cluster_of(coiled_api, b.infra_id).token == OTHER_TOKEN and b.infra_id.startswith("globex/")
    # a hostile pool naming another tenant's workspace or cluster gets nothing of it
    with pytest.raises(PermanentPusherError, match="not a member of the workspace 'acme'"):
        two.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d003", token=OTHER_TOKEN, workspace="acme"))
    assert two.status([a.infra_id])[a.infra_id].state is InfraState.MISSING
    with pytest.raises(PermanentPusherError, match="HTTP 403"):
        two.cancel(a.infra_id)
    assert cluster_of(coiled_api, a.infra_id).state == "pending"


def test_a_chosen_workspace_is_used(pusher, coiled_api):
    submission = pusher.submit(job(workspace="acme-research"))
    assert submission.infra_id.startswith("acme-research/")
    assert cluster_of(coiled_api, submission.infra_id).workspace == "acme-research"


def test_errors_are_clear_and_name_the_fix(pusher, coiled_api, monkeypatch):
    import coiled

    with pytest.raises(PermanentPusherError, match="coiled_credentials"):
        pusher.submit(job(coiled_credentials=None))
    with pytest.raises(PermanentPusherError, match="refused the pool's API token"):
        pusher.submit(job(coiled_credentials={"token": "bad-token-0000"}))
    # the client's interactive login was never started (it would ask Coiled for a new token)
    assert not [c for c in coiled_api.calls if "token" in c]
    with pytest.raises(PermanentPusherError, match=r"coiled setup"):
        pusher.submit(job(coiled_credentials={"token": UNSET_TOKEN}))
    # Coiled busy: the client itself retries (502/503/504/429); the job is made once
    coiled_api.inject("create_job", 503, "Service Unavailable", count=2)
    coiled_api.calls.clear()
    coiled_api.state.jobs.clear()
    submission = pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000e001"))
    assert coiled_api.calls.count("create_job") == 3 and len(coiled_api.state.jobs) == 1
    assert submission.infra_id.startswith("acme/")
    # Coiled unreachable: transient, and the client version is named where the client was used
    monkeypatch.setenv("PUSHPOOL_COILED_SERVER", "http://127.0.0.1:9")
    with pytest.raises(TransientPusherError, match="cannot reach Coiled at http://127.0.0.1:9"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000e002", coiled_credentials={"token": TOKEN,
                                                                                             "workspace": "acme"}))
    assert f"coiled client {coiled.__version__}" in str(translate(ConnectionResetError("reset"), "x"))


def test_nothing_of_this_machine_coiled_setup_is_used(tmp_path, coiled_api, monkeypatch):
    monkeypatch.setenv("DASK_COILED__TOKEN", OTHER_TOKEN)  # the host's own login, e.g. an operator's
    pusher = CoiledPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config()))
    assert cluster_of(coiled_api, pusher.submit(job()).infra_id).token == TOKEN


@pytest.mark.parametrize(("values", "field"), [
    ({"container": IMAGE, "software": "env"}, "software"),
    ({"vm_type": "m6i.large", "cpu": 4}, "vm_type"),
    ({"gpu": True, "arm": True}, "gpu"),
    ({"cpu": "8-4"}, "cpu"),
    ({"memory": "32GB-16GB"}, "memory"),
])
def test_deploy_time_rules_name_the_variable(values, field):
    with pytest.raises(InvalidInput, match=rf"job_variables\.{field}"):
        check_job_variables(values, values)
    check_job_variables({"cpu": "4-8", "memory": "16GiB-32GiB", "container": IMAGE}, {})


def test_classify_covers_what_coiled_reports():
    assert classify({"tasks": [{"state": "pending"}], "cluster_state": "starting"}).state is InfraState.PENDING
    stopped = classify({"tasks": [{"state": "pending"}], "cluster_state": "stopped"}, "idle")
    assert stopped.state is InfraState.EXITED and "stopped before the job ran" in stopped.reason
    built = classify({"tasks": [{"state": "pending"}], "cluster_state": "error"}, "software environment build error")
    assert "failed to build" in built.reason


def test_the_tested_client_range_is_the_one_pyproject_and_the_lambda_package_pin():
    import tomllib
    from pathlib import Path

    from pushpool.provisioners.lambda_package import EXTRAS
    from pushpool.pushers.coiled import COILED_TESTED

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    pins = {*project["optional-dependencies"]["coiled"], *EXTRAS["coiled"],
            *(r for r in project["optional-dependencies"]["dev"] if r.startswith("coiled"))}
    assert pins == {f"coiled{COILED_TESTED}"}


def test_the_fake_checks_the_token_and_fails_an_unknown_call_with_its_path(coiled_api):
    import httpx

    assert httpx.get(f"{coiled_api.url}/api/v2/user/me").status_code == 401  # no token
    assert httpx.get(f"{coiled_api.url}/api/v2/user/me", headers={"Authorization": "ApiToken nope-1"}).status_code \
        == 401
    unknown = httpx.get(f"{coiled_api.url}/api/v2/clusters/account/acme/stop-everything",
                        headers={"Authorization": f"ApiToken {TOKEN}"})
    assert unknown.status_code == 404
    assert "unknown call GET /api/v2/clusters/account/acme/stop-everything" in unknown.text
