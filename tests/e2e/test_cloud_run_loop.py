"""The full loop through ``cloud-run:push``: the control plane creates and runs a Cloud Run job on the fake
API, a simulator runs exactly the container the job describes, and the run completes through the API; a
failed execution crashes the run with its message, a cancelled run cancels its execution, jobs are
deleted after their runs, and a 503 on run never starts a second execution."""

from __future__ import annotations

import textwrap

import pytest

from pushpool.pushers.cloud_run import CloudRunPusher, job_id
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.gcp_fixtures import PROJECT, REGION
from tests.live_server import wait_for_state, wait_until

pytest.importorskip("google.cloud.run_v2")
from tests.fakes.cloud_run_api import CloudRunSimulator  # noqa: E402

IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/flows/etl:1"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def cloud_run_template(**defaults) -> dict:
    template = CloudRunPusher.default_job_template()
    values = {"credentials": "{{ pushpool.blocks.gcp }}", "region": REGION, **defaults}
    for name, value in values.items():
        template["variables"]["properties"][name]["default"] = value
    return template


@pytest.fixture
def cloud_run(live, cloud_run_api, tmp_path):
    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        def etl(rows: int = 3):
            print(f"loaded {rows} rows")
            return rows
    '''))
    client = live.client()
    client.request("POST", client.ws("/blocks"), json={"name": "gcp", "type": "gcp-credentials", "data": {
        "service_account_info": cloud_run_api.key, "project": PROJECT}})
    client.create_work_pool("cr", "cloud-run:push", base_job_template=cloud_run_template())
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl", work_pool_name="cr",
                                  image=IMAGE, parameters={"rows": 7})
    return client, dep, CloudRunSimulator(cloud_run_api, tmp_path)


def test_a_run_completes_on_cloud_run_and_its_job_is_deleted(cloud_run, cloud_run_api):
    client, dep, simulator = cloud_run
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert run["console_url"].startswith("https://console.cloud.google.com/run/jobs/executions/details/")
    assert run["logs_url"].startswith("https://console.cloud.google.com/logs/query;")
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert "loaded 7 rows" in simulator.output
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "COMPLETED"
    job_name = f"projects/{PROJECT}/locations/{REGION}/jobs/{job_id(run['id'])}"
    wait_until(lambda: job_name in cloud_run_api.state.deleted_jobs, "the job deleted")


def test_a_failed_execution_ends_the_run_crashed_with_its_message(cloud_run, cloud_run_api):
    client, dep, _ = cloud_run
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    cloud_run_api.finish(run["infra_id"], 2, "ModuleNotFoundError: No module named 'pandas'")
    done = wait_for_state(client, run["id"], FINAL)
    assert done["state"]["type"] == "CRASHED"
    assert "exit code 2" in done["state"]["message"] and "pandas" in done["state"]["message"]


def test_cancelling_a_run_cancels_its_execution(cloud_run, cloud_run_api):
    client, dep, _ = cloud_run
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    cloud_run_api.running(run["infra_id"])
    client.cancel_flow_run(run["id"])
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "CANCELLED"
    assert cloud_run_api.state.executions[run["infra_id"]]["cancelledCount"] == 1


def test_a_503_on_run_does_not_start_a_second_execution(cloud_run, cloud_run_api):
    client, dep, simulator = cloud_run
    cloud_run_api.inject("run_job", 503, "The service is currently unavailable.", after=True)
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    job_name = f"projects/{PROJECT}/locations/{REGION}/jobs/{job_id(run['id'])}"
    assert [e["name"] for e in cloud_run_api.executions_of_job(job_name)] == [run["infra_id"]]
    assert cloud_run_api.calls.count("run_job") == 1
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "COMPLETED"


def test_flow_run_logs_come_from_cloud_logging_through_the_api(cloud_run, cloud_run_api, live):
    client, dep, _ = cloud_run
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    for second, text in enumerate(["starting", "loaded 7 rows", "done"]):
        cloud_run_api.add_log(run["infra_id"], text, f"2026-12-01T10:00:0{second}.000000Z")
    page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
    assert page["supported"] and page["lines"] == ["starting", "loaded 7 rows", "done"]
    tail = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"), params={"tail": 2})
    assert tail["lines"] == ["loaded 7 rows", "done"]
    cloud_run_api.add_log(run["infra_id"], "one more", "2026-12-01T10:00:09.000000Z")
    more = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"), params={"cursor": page["cursor"]})
    assert more["lines"] == ["one more"]
    from typer.testing import CliRunner

    from pushpool.cli.main import app

    result = CliRunner().invoke(app, ["flow-run", "logs", run["id"], "--tail", "5"],
                                env={"PUSHPOOL_API_URL": live.settings.api_url, "PUSHPOOL_API_KEY": live.key})
    assert result.exit_code == 0 and "loaded 7 rows" in result.output  # no Google credentials on this side
