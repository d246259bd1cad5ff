"""``cloud-run:push`` with the official google-cloud-run client (REST) against the fake Cloud Run API."""

from __future__ import annotations

import json

import pytest

from pushpool.pushers.base import InfraState, Job, PermanentPusherError, PusherContext, TransientPusherError
from pushpool.pushers.cloud_run import CloudRunPusher, job_id
from tests.gcp_fixtures import PROJECT, REGION

IMAGE = "europe-west1-docker.pkg.dev/pushpool-test/flows/etl:1"
RUN_ID = "0190d6a8-5a3c-7000-8000-00000000a001"
PARENT = f"projects/{PROJECT}/locations/{REGION}"


def config(api, **values) -> dict:
    return {"credentials": {"service_account_info": api.key}, "region": REGION, "cpu": "2", "memory": "1Gi",
            "timeout": 7200, **values}


def job(api, run_id: str = RUN_ID, attempt: int = 1, **values) -> Job:
    return Job(flow_run_id=run_id, workspace_id="ws", pool_name="cr", deployment_name="etl/nightly",
               flow_run_name="brave-fox", configuration=config(api, **values),
               env={"PUSHPOOL_FLOW_RUN_ID": run_id, "PUSHPOOL_RUN_TOKEN": "run-token"}, image=IMAGE,
               labels={"pushpool.flow-run-id": run_id, "pushpool.work-pool": "cr"}, attempt=attempt)


@pytest.fixture
def pusher(tmp_path, cloud_run_api) -> CloudRunPusher:
    return CloudRunPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config(cloud_run_api)))


def test_submit_creates_and_runs_one_job_per_run(pusher, cloud_run_api):
    submission = pusher.submit(job(cloud_run_api))
    name = f"{PARENT}/jobs/{job_id(RUN_ID)}"
    assert submission.infra_id.startswith(f"{name}/executions/")
    assert submission.console_url.startswith(f"https://console.cloud.google.com/run/jobs/executions/details/{REGION}/")
    assert "run.googleapis.com%2Fexecution_name" in submission.logs_url
    created = cloud_run_api.state.jobs[name]
    container = created["template"]["template"]["containers"][0]
    assert container["image"] == IMAGE and container["command"] == ["pushpool-runner"]
    assert {e["name"]: e["value"] for e in container["env"]}["PUSHPOOL_RUN_TOKEN"] == "run-token"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert created["template"]["template"]["timeout"] == "7200s"
    assert created["labels"]["pushpool-flow-run-id"] == RUN_ID
    assert set(cloud_run_api.state.callers) == {f"pushpool@{PROJECT}.iam.gserviceaccount.com"}  # signed, checked


def test_secrets_service_account_and_connector_are_applied(pusher, cloud_run_api):
    pusher.submit(job(cloud_run_api, env_from_secrets={"DB_URL": {"secret": "db-url"}},
                      service_account_name=f"flows@{PROJECT}.iam.gserviceaccount.com", vpc_connector="conn"))
    task = cloud_run_api.state.jobs[f"{PARENT}/jobs/{job_id(RUN_ID)}"]["template"]["template"]
    secret = next(e for e in task["containers"][0]["env"] if e["name"] == "DB_URL")
    assert secret["valueSource"]["secretKeyRef"] == {"secret": "db-url", "version": "latest"}
    assert task["serviceAccount"].startswith("flows@") and task["vpcAccess"]["connector"] == "conn"


def test_a_lost_run_answer_never_starts_a_second_execution(pusher, cloud_run_api):
    cloud_run_api.inject("run_job", 503, "The service is currently unavailable.", after=True)
    with pytest.raises(TransientPusherError, match="503"):
        pusher.submit(job(cloud_run_api))
    again = pusher.submit(job(cloud_run_api, attempt=2))  # the job exists (409 → fine), its execution is adopted
    executions = cloud_run_api.executions_of_job(f"{PARENT}/jobs/{job_id(RUN_ID)}")
    assert [e["name"] for e in executions] == [again.infra_id]


def test_status_explains_how_an_execution_ended(pusher, cloud_run_api):
    ids = [pusher.submit(job(cloud_run_api, run_id=f"0190d6a8-5a3c-7000-8000-00000000b00{i}")).infra_id
           for i in range(4)]
    cloud_run_api.running(ids[1])
    cloud_run_api.finish(ids[2], 0)
    cloud_run_api.finish(ids[3], 137, "Container terminated: memory limit exceeded")
    statuses = pusher.status([*ids, f"{PARENT}/jobs/gone/executions/gone-1"])
    assert statuses[ids[0]].state is InfraState.PENDING and statuses[ids[1]].state is InfraState.RUNNING
    assert statuses[ids[2]].exit_code == 0
    assert statuses[ids[3]].exit_code == 137 and "memory limit exceeded" in statuses[ids[3]].reason
    assert statuses[f"{PARENT}/jobs/gone/executions/gone-1"].state is InfraState.MISSING


def test_cancel_then_cleanup_deletes_the_job(pusher, cloud_run_api):
    infra_id = pusher.submit(job(cloud_run_api)).infra_id
    pusher.cancel(infra_id)
    assert "cancelled" in pusher.status([infra_id])[infra_id].reason
    pusher.cleanup(infra_id)
    assert cloud_run_api.state.deleted_jobs == [f"{PARENT}/jobs/{job_id(RUN_ID)}"]
    pusher.cleanup(infra_id)  # already gone: fine
    pusher.cancel(infra_id)


def test_keep_job_keeps_it(tmp_path, cloud_run_api):
    pusher = CloudRunPusher(PusherContext(state_dir=tmp_path, api_url="http://x",
                                          pool_config=config(cloud_run_api, keep_job=True)))
    infra_id = pusher.submit(job(cloud_run_api)).infra_id
    pusher.cleanup(infra_id)
    assert cloud_run_api.state.deleted_jobs == []


def test_errors_name_the_fix(pusher, cloud_run_api):
    with pytest.raises(PermanentPusherError, match="linux/amd64 images only"):
        pusher.submit(Job(**{**job(cloud_run_api).__dict__, "image": "gcr.io/x/flows:arm64-only"}))
    cloud_run_api.inject("create_job", 403, "Permission 'run.jobs.create' denied")
    with pytest.raises(PermanentPusherError, match="roles/run.developer"):
        pusher.submit(job(cloud_run_api, run_id="0190d6a8-5a3c-7000-8000-00000000c001"))
    cloud_run_api.inject("create_job", 429, "Quota exceeded for requests per minute")
    with pytest.raises(TransientPusherError, match="429"):
        pusher.submit(job(cloud_run_api, run_id="0190d6a8-5a3c-7000-8000-00000000c002"))
    with pytest.raises(PermanentPusherError, match="service account key"):
        pusher.submit(job(cloud_run_api, credentials={"service_account_info": json.dumps({"type": "x"})}))


# ---------------------------------------------------------------------------------------------------------------
# Issue 23: where the fake used to be lenient (every operation done at once, counts always set, deletes never
# failing), Cloud Run is not; these failed against the stricter fake before the pusher changed.


def test_a_slow_job_creation_is_not_waited_for_and_the_next_attempt_runs_it(pusher, cloud_run_api, monkeypatch):
    import pushpool.pushers.cloud_run as cloud_run

    monkeypatch.setattr(cloud_run, "CREATE_WAIT_SECONDS", 0.3)
    cloud_run_api.behaviour.create_polls = 10**6  # still creating, whatever the client waits
    with pytest.raises(TransientPusherError, match="still being created"):
        pusher.submit(job(cloud_run_api))
    cloud_run_api.complete_operations()  # Cloud Run finishes the creation meanwhile
    again = pusher.submit(job(cloud_run_api, attempt=2))
    name = f"{PARENT}/jobs/{job_id(RUN_ID)}"
    assert [e["name"] for e in cloud_run_api.executions_of_job(name)] == [again.infra_id]


@pytest.mark.parametrize("exit_code, state, reason", [
    (0, InfraState.EXITED, None), (3, InfraState.EXITED, "exit code 3"),
])
def test_an_execution_that_completed_before_its_counts_did_is_finished(pusher, cloud_run_api, exit_code, state,
                                                                         reason):
    name = pusher.submit(job(cloud_run_api)).infra_id
    cloud_run_api.running(name)
    cloud_run_api.finish(name, exit_code, counts=False)  # Completed condition and completionTime, counts lag
    status = pusher.status([name])[name]
    assert (status.state, status.exit_code) == (state, exit_code)
    assert reason is None or reason in status.reason


def test_a_failed_or_unfinished_job_deletion_is_tried_again(pusher, cloud_run_api, monkeypatch):
    import pushpool.pushers.cloud_run as cloud_run
    from pushpool.pushers.base import PusherError

    name = pusher.submit(job(cloud_run_api)).infra_id
    job_name = name.rsplit("/executions/", 1)[0]
    cloud_run_api.behaviour.failing_deletes = 1
    with pytest.raises(PusherError, match="DeleteJob"):
        pusher.cleanup(name)
    assert job_name in cloud_run_api.state.jobs  # not counted as cleaned up: the job is still there
    monkeypatch.setattr(cloud_run, "DELETE_WAIT_SECONDS", 0.3)
    cloud_run_api.behaviour.delete_polls = 10**6
    with pytest.raises(TransientPusherError, match="still going"):
        pusher.cleanup(name)
    cloud_run_api.complete_operations()
    pusher.cleanup(name)  # gone now: NotFound is done
    assert job_name not in cloud_run_api.state.jobs and job_name in cloud_run_api.state.deleted_jobs
