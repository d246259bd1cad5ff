"""The full loop through ``ecs:push`` on moto: the control plane submits a task, a container
simulator runs exactly the command and environment moto recorded, and the run completes
through the API. Failures, cancellation, throttling and dispatcher crashes are covered too."""

from __future__ import annotations

import textwrap
import time
from datetime import timedelta

import pytest

from pushpool.control_plane.services.dispatcher import Dispatcher
from pushpool.control_plane.services.reconciler import Reconciler
from pushpool.pushers.ecs import EcsPusher
from tests.fakes.aws import REGION, ContainerSimulator
from tests.fakes.crashes import die_after_first_submit, dispatch_crash_then_restart
from tests.live_server import wait_for_state

IMAGE = "registry.example/flows:1"


def ecs_template(**defaults) -> dict:
    template = EcsPusher.default_job_template()
    values = {"region": REGION, "cluster": "flows", "aws_credentials": "{{ pushpool.blocks.aws }}", **defaults}
    for name, value in values.items():
        template["variables"]["properties"][name]["default"] = value
    return template


def make_block(create) -> None:
    create({"name": "aws", "type": "aws-credentials", "data": {
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}})


@pytest.fixture
def project(tmp_path):
    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        from pushpool import flow

        @flow
        def etl(rows: int = 3):
            print(f"loaded {rows} rows")
            return rows
    '''))
    return tmp_path


def wait_for_infra(client, run_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run["infra_id"]:
            return run
        time.sleep(0.1)
    raise AssertionError(f"never submitted: {client.read_flow_run(run_id)['state']}")


@pytest.fixture
def ecs(live, aws, project):
    client = live.client()
    make_block(lambda body: client.request("POST", client.ws("/blocks"), json=body))
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template())
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE, parameters={"rows": 7})
    return client, dep, ContainerSimulator(aws, project)


def test_a_run_completes_through_ecs(ecs, aws):
    client, dep, simulator = ecs
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert run["console_url"].startswith(f"https://{REGION}.console.aws.amazon.com/ecs/v2/clusters/flows/tasks/")
    assert run["logs_url"].startswith(f"https://{REGION}.console.aws.amazon.com/cloudwatch/home")
    command, env = simulator.recorded(run["infra_id"])
    assert command == ["pushpool-runner"] and env["PUSHPOOL_FLOW_RUN_ID"] == run["id"]
    assert aws.task(run["infra_id"]).containers[0].image == IMAGE
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert "loaded 7 rows" in simulator.output
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "COMPLETED"


@pytest.mark.parametrize("stop, expected", [
    ({"exit_code": 1}, "exit code 1"),
    ({"exit_code": 137, "container_reason": "OutOfMemoryError: Container killed due to memory usage"},
     "likely out of memory"),
    ({"exit_code": None, "stop_code": "TaskFailedToStart",
      "reason": "CannotPullContainerError: pull access denied for registry.example/flows"},
     f"image pull failed for '{IMAGE}'"),
])
def test_failed_tasks_end_the_run_crashed_with_the_reason(ecs, aws, stop, expected):
    client, dep, _ = ecs
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    aws.stop(run["infra_id"], **stop)
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "CRASHED" and expected in done["state"]["message"]


def test_cancelling_a_running_run_stops_the_task(ecs, aws):
    client, dep, _ = ecs
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert client.cancel_flow_run(run["id"])["state"]["type"] == "CANCELLING"
    done = wait_for_state(client, run["id"], {"CANCELLED", "CRASHED", "COMPLETED"})
    assert done["state"]["type"] == "CANCELLED"
    assert aws.task(run["infra_id"]).stopped_reason == "Cancelled by pushpool"


def test_flow_run_logs_come_from_cloudwatch_through_the_api(ecs, aws, live):
    client, dep, _ = ecs
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    task_id = run["infra_id"].rsplit("/", 1)[1]
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/pushpool/flows")
    logs.create_log_stream(logGroupName="/pushpool/flows", logStreamName=f"pushpool/pushpool/{task_id}")
    logs.put_log_events(logGroupName="/pushpool/flows", logStreamName=f"pushpool/pushpool/{task_id}",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "hello from ecs"}])
    page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
    assert page["supported"] and page["lines"] == ["hello from ecs"]
    from typer.testing import CliRunner

    from pushpool.cli.main import app

    result = CliRunner().invoke(app, ["flow-run", "logs", run["id"], "--tail", "5"],
                                env={"PUSHPOOL_API_URL": live.settings.api_url, "PUSHPOOL_API_KEY": live.key})
    assert result.exit_code == 0 and "hello from ecs" in result.output  # no AWS credentials needed on this side


# --------------------------------------------------------------------------- faults, on the services with a fake clock


@pytest.fixture
def ecs_services(api, ctx, aws):
    make_block(lambda body: api.ok("POST", api.ws("/blocks"), json=body))
    api.pool("ecs", type="ecs:push", base_job_template=ecs_template())
    dep = api.deployment("nightly", flow_name="etl", pool="ecs", image=IMAGE)
    return dep


def tasks_per_run(aws) -> dict[str, int]:
    """Tasks by the run id they were started for (``startedBy`` is the run id without its hyphens)."""
    counts: dict[str, int] = {}
    for task in aws.tasks("flows").values():
        compact = task.started_by
        run_id = "-".join((compact[:8], compact[8:12], compact[12:16], compact[16:20], compact[20:32]))
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def test_throttled_run_task_still_submits_every_run_exactly_once(api, ctx, clock, aws, ecs_services, monkeypatch):
    from botocore.exceptions import ClientError

    runs = [api.run(ecs_services["id"])["id"] for _ in range(12)]
    real_client = EcsPusher.client
    throttled_calls = {"left": 8}

    def client(self, service, cfg, region=None):
        c = real_client(self, service, cfg, region)
        if service == "ecs":
            real_run_task = c.run_task

            def run_task(**kwargs):
                if throttled_calls["left"] > 0:
                    throttled_calls["left"] -= 1
                    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                                      "RunTask")
                return real_run_task(**kwargs)
            c.run_task = run_task
        return c

    monkeypatch.setattr(EcsPusher, "client", client)
    dispatcher = Dispatcher(ctx)
    for _ in range(12):
        dispatcher.run_once()
        clock.advance(30)
    dispatcher.close()
    assert throttled_calls["left"] == 0
    assert tasks_per_run(aws) == {run_id: 1 for run_id in runs}


def test_a_dispatcher_killed_between_claim_and_submit_submits_once_after_restart(api, ctx, clock, aws, ecs_services):
    run_id = api.run(ecs_services["id"])["id"]
    pool = ctx.store.get_work_pool(ctx.store.get_workspace("default").id, "ecs")
    assert ctx.store.claim_flow_runs(pool.id, clock.now(), clock.now() + timedelta(seconds=120), 10).claimed
    clock.advance(121)  # ... the dispatcher died; its lease lapses
    restarted = Dispatcher(ctx)
    restarted.run_once()
    restarted.run_once()
    restarted.close()
    assert tasks_per_run(aws) == {run_id: 1}


def test_a_crash_between_run_task_and_recording_it_never_starts_a_second_task(api, ctx, clock, aws, ecs_services,
                                                                             monkeypatch):
    run_id = api.run(ecs_services["id"])["id"]
    monkeypatch.setattr(EcsPusher, "submit", die_after_first_submit(EcsPusher.submit))
    dispatch_crash_then_restart(ctx, clock)
    assert tasks_per_run(aws) == {run_id: 1}  # moto does not enforce clientToken: our ListTasks guard did
    assert api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["infra_id"]


def test_200_runs_register_one_task_definition(api, ctx, clock, aws, ecs_services):
    from moto.ecs.models import ecs_backends

    for i in range(200):
        api.run(ecs_services["id"], scheduled_time=(clock.now() + timedelta(seconds=i)).isoformat())
    clock.advance(300)
    dispatcher = Dispatcher(ctx)
    for _ in range(3):
        dispatcher.run_once()
    dispatcher.close()
    assert sum(tasks_per_run(aws).values()) == 200
    families = ecs_backends["123456789012"][REGION].task_definitions
    assert [len(revisions) for family, revisions in families.items() if family.startswith("pushpool_ecs_")] == [1]
    assert aws.rules.counts("RegisterTaskDefinition") == {"ok": 1}
    Reconciler(ctx).run_once()


def test_runs_due_at_once_leave_under_awss_limits_exactly_once():
    """The bench-ecs scenario, small: runs of several deployments due at once through the strict fake's RunTask and
    RegisterTaskDefinition throttling (its own moto server) — every run one task, none crashed by throttling."""
    from tests.benchmarks.ecs_throttled import run

    result = run(runs=60, deployments=4, run_task_rate=20.0, timeout=120)
    assert result["tasks"] == 60 and result["most_tasks_per_run"] == 1
    assert result["states"].get("CRASHED", 0) == 0 and result["register"].get("ok") == 4
