"""The serverless control plane end to end on moto: the stack from ``infra/pushpool.yaml`` deploys into
moto's CloudFormation; the real handlers, invoked with Function URL and EventBridge Scheduler events,
serve the API on DynamoDB (blocks encrypted with the stack's KMS key) and tick a run through the ECS
pusher, whose task a container simulator runs until the flow reports COMPLETED."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from pushpool.client import PushpoolClient
from pushpool.control_plane import lambda_handler
from pushpool.control_plane.clock import FakeClock
from pushpool.control_plane.errors import ConfigurationError, InvalidInput
from pushpool.control_plane.models import Deployment, WorkPool, WorkQueue
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.dynamodb import DynamoDbStore
from pushpool.control_plane.storage.dynamodb_schema import table_definition
from pushpool.provisioners.lambda_stack import LambdaStack, bootstrap_owner
from pushpool.pushers.base import PusherContext, PusherRegistry, default_job_template
from tests.e2e.test_ecs_loop import IMAGE, ecs_template, wait_for_infra
from tests.fakes.aws import REGION, ContainerSimulator
from tests.fakes.function_url import FunctionUrl, LambdaContext
from tests.fakes.moto_cfn import placeholder_package, register
from tests.fakes.pushers import RecordingPusher
from tests.live_server import wait_for_state

STACK = "pp"
SCHEDULE_EVENT = {"source": "pushpool.schedule"}


def recording_registry(pusher: RecordingPusher, home, api_url: str) -> PusherRegistry:
    return PusherRegistry(PusherContext(state_dir=home, api_url=api_url), overrides={"fake:push": pusher})


@pytest.fixture
def stack(aws, tmp_path):
    register()
    events: list[str] = []
    info = LambdaStack(STACK, REGION, poll_seconds=0.05).deploy(placeholder_package(tmp_path), events.append)
    info.events = events  # type: ignore[attr-defined]
    return info


@pytest.fixture
def lambda_env(stack, aws, tmp_path, monkeypatch):
    """The environment the template gives the functions, pointed at a Function URL on 127.0.0.1."""
    monkeypatch.setattr(lambda_handler, "_runtime", None)
    with FunctionUrl(lambda_handler.api_handler) as url:
        for name, value in {
            "PUSHPOOL_STORE": "dynamodb", "PUSHPOOL_DYNAMODB_TABLE": stack.outputs["TableName"],
            "PUSHPOOL_KMS_KEY_ID": stack.outputs["KmsKeyArn"], "PUSHPOOL_PUBLIC_API_URL": url.url,
            "PUSHPOOL_TICK_FUNCTION_NAME": f"{STACK}-tick", "PUSHPOOL_HOME": str(tmp_path / "lambda-home"),
        }.items():
            monkeypatch.setenv(name, value)
        yield url
    if lambda_handler._runtime is not None:
        lambda_handler._runtime.dispatcher.close()


def test_the_stack_has_what_the_template_promises(stack, aws):
    assert stack.status == "CREATE_COMPLETE"
    assert stack.api_url.startswith("https://") and ".lambda-url." in stack.api_url
    assert f"{STACK}: CREATE_COMPLETE" in stack.events  # progress is reported as the stack goes
    dynamodb = aws.client("dynamodb")
    table = dynamodb.describe_table(TableName=stack.outputs["TableName"])["Table"]
    expected = table_definition(table["TableName"])
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == expected["KeySchema"]
    assert sorted((g["IndexName"], json.dumps(g["KeySchema"])) for g in table["GlobalSecondaryIndexes"]) == sorted(
        (g["IndexName"], json.dumps(g["KeySchema"])) for g in expected["GlobalSecondaryIndexes"])
    [schedule] = aws.client("scheduler").list_schedules()["Schedules"]
    detail = aws.client("scheduler").get_schedule(Name=schedule["Name"])
    assert detail["ScheduleExpression"] == "rate(1 minute)"
    assert detail["Target"]["Arn"].endswith(f":function:{STACK}-tick")
    assert json.loads(detail["Target"]["Input"]) == SCHEDULE_EVENT
    tick = aws.client("lambda").get_function(FunctionName=f"{STACK}-tick")["Configuration"]
    assert tick["Handler"] == "pushpool.control_plane.lambda_handler.tick_handler"
    assert tick["Environment"]["Variables"]["PUSHPOOL_PUBLIC_API_URL"] == stack.outputs["ApiUrl"]
    logs = aws.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{STACK}-")["logGroups"]
    assert {g["logGroupName"]: g.get("retentionInDays") for g in logs} == {
        f"/aws/lambda/{STACK}-api": 30, f"/aws/lambda/{STACK}-tick": 30}
    alarms = {a["AlarmName"]: a for a in aws.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    lateness, errors = alarms[f"{STACK}-dispatch-lateness"], alarms[f"{STACK}-tick-errors"]
    assert (lateness["Namespace"], lateness["MetricName"], lateness["ExtendedStatistic"], lateness["Threshold"]) == (
        "pushpool", "DispatchLateness", "p99", 60)  # the EMF metrics the functions write (control_plane/metrics.py)
    assert (errors["MetricName"], errors["Statistic"], errors["Threshold"]) == ("TickErrors", "Sum", 0)
    assert lateness["AlarmActions"] == [] and errors["AlarmActions"] == []  # no topic given: nobody is paged


def test_bootstrap_happens_once(stack):
    first = bootstrap_owner(stack)
    assert first is not None and first[1].startswith("ppu_")
    assert bootstrap_owner(stack) is None


def test_handlers_serve_the_api_and_tick_a_run_to_completion_through_ecs(stack, lambda_env, aws, tmp_path):
    workspace, key = bootstrap_owner(stack)
    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        from pushpool import flow

        @flow
        def etl(rows: int = 3):
            print(f"loaded {rows} rows")
    '''))
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    client.request("POST", client.ws("/blocks"), json={"name": "aws", "type": "aws-credentials", "data": {
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}})
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template())
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE, parameters={"rows": 5})
    woken: list[str] = []
    lambda_handler.runtime().ctx.wake_ticker = woken.append
    run = client.create_flow_run(dep["id"])
    assert woken == ["flow run created"]  # the API asks for a tick at once instead of waiting a minute

    summary = lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=20))
    assert summary["dispatched"] == 1 and summary["errors"] == []
    submitted = wait_for_infra(client, run["id"])
    assert submitted["console_url"].startswith(f"https://{REGION}.console.aws.amazon.com/ecs/")
    simulator = ContainerSimulator(aws, tmp_path)
    _, env = simulator.recorded(submitted["infra_id"])
    assert env["PUSHPOOL_API_URL"] == lambda_env.url and env["PUSHPOOL_RUN_TOKEN"].startswith("ppr_")
    assert simulator.run(submitted["infra_id"]) == 0, simulator.output
    assert "loaded 5 rows" in simulator.output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"

    second = lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=20))
    assert second["reconciled"] >= 1
    assert client.read_flow_run(run["id"])["cleaned_up"] is True
    health = client.request("GET", "/api/health")
    assert health["store"] == "dynamodb" and health["last_tick"]["finished"] == second["finished"]
    assert any(e["requestContext"]["http"]["method"] == "POST" for e in lambda_env.events)
    store = DynamoDbStore(stack.outputs["TableName"], region=REGION)
    assert store.get_block(store.get_workspace(workspace).id, "aws").ciphertext.startswith("kms1:")


def test_a_tick_dispatches_runs_due_before_the_next_tick(stack, lambda_env, tmp_path):
    """A run due 20 s after the tick starts is dispatched by that tick (it waits), not a minute later."""
    workspace, key = bootstrap_owner(stack)
    clock = FakeClock()
    pusher = RecordingPusher()
    lambda_handler._runtime = lambda_handler.build_runtime(
        Settings(), clock=clock, pushers=recording_registry(pusher, tmp_path, lambda_env.url),
        sleep=lambda seconds: clock.advance(seconds))
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    client.create_work_pool("fast", "fake:push")
    dep = client.apply_deployment(flow_name="f", name="d", entrypoint="f.py:f", work_pool_name="fast")
    due = clock.now() + timedelta(seconds=20)
    run = client.create_flow_run(dep["id"], scheduled_time=due.isoformat())
    summary = lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=75))
    assert summary["dispatched"] == 1
    assert clock.now() == due  # it slept until the run was due, then claimed it
    assert [job.flow_run_id for job in pusher.jobs] == [run["id"]]


def test_a_tick_does_not_wait_past_its_invocation_time(stack, lambda_env, tmp_path):
    workspace, key = bootstrap_owner(stack)
    clock = FakeClock()
    slept: list[float] = []
    lambda_handler._runtime = lambda_handler.build_runtime(
        Settings(), clock=clock, pushers=recording_registry(RecordingPusher(), tmp_path, lambda_env.url),
        sleep=slept.append)
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    client.create_work_pool("fast", "fake:push")
    dep = client.apply_deployment(flow_name="f", name="d", entrypoint="f.py:f", work_pool_name="fast")
    client.create_flow_run(dep["id"], scheduled_time=(clock.now() + timedelta(seconds=50)).isoformat())
    summary = lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=30))
    assert summary["dispatched"] == 0 and slept == []  # 50 s away, 30 s left: the next tick takes it


def test_the_runtime_refuses_to_start_without_an_encryption_key(monkeypatch, tmp_path):
    with pytest.raises(ConfigurationError, match="PUSHPOOL_KMS_KEY_ID"):
        lambda_handler.build_runtime(Settings(store="dynamodb", dynamodb_table="t", home=tmp_path))


@pytest.fixture
def lambda_without_docker(aws):
    """moto answers Invoke without running a container (the setting outlives a reset: put it back)."""
    import httpx

    httpx.post(f"{aws.url}/moto-api/config", json={"lambda": {"use_docker": False}})
    yield
    httpx.post(f"{aws.url}/moto-api/config", json={"lambda": {"use_docker": True}})


def test_the_api_wakes_the_tick_with_an_asynchronous_invoke(stack, lambda_without_docker, monkeypatch):
    import boto3

    calls: list[dict] = []
    make_client = boto3.session.Session.client

    def recording_client(self, service, *args, **kwargs):
        client = make_client(self, service, *args, **kwargs)
        client.meta.events.register("before-call.lambda.Invoke", lambda params, **_: calls.append(params))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", recording_client)
    lambda_handler.lambda_waker(f"{STACK}-tick")("flow run created")
    [call] = calls
    assert call["url_path"].startswith(f"/2015-03-31/functions/{STACK}-tick/invocations")
    assert call["headers"]["X-Amz-Invocation-Type"] == "Event"
    assert json.loads(call["body"]) == {"source": lambda_handler.WAKE_SOURCE, "reason": "flow run created"}


def a_recording_pool(stack, lambda_env, tmp_path) -> tuple[RecordingPusher, PushpoolClient]:
    """A runtime whose ``fake:push`` pool ``fast`` records submissions, and the owner's client."""
    workspace, key = bootstrap_owner(stack)
    pusher = RecordingPusher()
    lambda_handler._runtime = lambda_handler.build_runtime(
        Settings(), pushers=recording_registry(pusher, tmp_path, lambda_env.url))
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    client.create_work_pool("fast", "fake:push")
    return pusher, client


def a_run_due_now(stack, lambda_env, tmp_path) -> tuple[RecordingPusher, dict, PushpoolClient]:
    """A recording pool (:func:`a_recording_pool`), a run of it due now, and the owner's client."""
    pusher, client = a_recording_pool(stack, lambda_env, tmp_path)
    dep = client.apply_deployment(flow_name="f", name="d", entrypoint="f.py:f", work_pool_name="fast")
    return pusher, client.create_flow_run(dep["id"]), client


def test_a_wake_up_tick_dispatches_without_scheduling_or_recording(stack, lambda_env, tmp_path):
    pusher, run, client = a_run_due_now(stack, lambda_env, tmp_path)
    summary = lambda_handler.tick_handler({"source": lambda_handler.WAKE_SOURCE, "reason": "flow run created"},
                                          LambdaContext(f"{STACK}-tick"))
    assert summary["kind"] == "wake" and summary["dispatched"] == 1
    assert [job.flow_run_id for job in pusher.jobs] == [run["id"]]
    assert "last_tick" not in client.request("GET", "/api/health")


def test_a_wake_up_looks_again_while_the_index_catches_up(stack, lambda_env, tmp_path, monkeypatch):
    """DynamoDB's indexes are eventually consistent: a wake-up that finds nothing tries again a second later."""
    pusher = RecordingPusher()
    slept: list[float] = []
    rt = lambda_handler.build_runtime(Settings(), pushers=recording_registry(pusher, tmp_path, lambda_env.url),
                                      sleep=slept.append)
    passes = iter([[], [], ["run"]])
    monkeypatch.setattr(rt.dispatcher, "run_once", lambda: next(passes, []))
    lambda_handler._runtime = rt
    summary = lambda_handler.tick_handler({"source": lambda_handler.WAKE_SOURCE}, LambdaContext(f"{STACK}-tick"))
    assert summary["dispatched"] == 1 and slept == [1.0, 1.0]


def test_on_lambda_webhook_events_are_stored_per_request_and_the_tick_fires_proactive_triggers(stack, lambda_env):
    import time

    import httpx

    workspace, key = bootstrap_owner(stack)
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template())
    dep = client.apply_deployment(flow_name="etl", name="recover", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE)
    hook = client.request("POST", client.ws("/webhooks"), json={
        "name": "jobs", "template": '{"event": "job.{{ body.step }}", "resource": {"pushpool.resource.id": '
                                    '"job.{{ body.job }}"}}'})
    client.request("PUT", client.ws("/automations/job-sla"), json={
        "name": "job-sla", "actions": [{"type": "run-deployment", "deployment": "etl/recover",
                                        "parameters": {"rows": 1}}],
        "trigger": {"posture": "Proactive", "after": ["job.started"], "expect": ["job.finished"], "within": 1,
                    "for_each": ["pushpool.resource.id"]}})
    for job, steps in (("a", ["started"]), ("b", ["started", "finished"])):
        for step in steps:
            answer = httpx.post(lambda_env.url + hook["path"], json={"job": job, "step": step})
            assert answer.status_code == 202, answer.text
    stored = client.request("GET", client.ws("/events"), params={"event": "job."})["events"]
    assert len(stored) == 3  # written before each answer: a Lambda may freeze right after it
    time.sleep(1.2)
    summary = lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=20))
    assert summary["automations"] == 1 and summary["errors"] == []
    assert len(client.request("GET", client.ws("/flow_runs"), params={"deployment_id": dep["id"]})) == 1
    again = lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=20))
    assert again["automations"] == 0


def test_lambda_refuses_host_processes_at_pool_creation(stack, lambda_env):
    workspace, key = bootstrap_owner(stack)
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    with pytest.raises(InvalidInput, match="local:push is disabled on this server"):
        client.create_work_pool("host", "local:push")
    assert client.read_work_pool_or_none("host") is None


def test_the_tick_crashes_a_run_of_a_local_pool_that_predates_the_rule(stack, lambda_env, tmp_path, monkeypatch):
    """A ``local:push`` pool already in the table (written before host processes were refused) never spawns a
    process in the tick: its run is CRASHED with a message naming the setting."""
    from pushpool.pushers.local import LocalPusher

    spawned: list[object] = []
    monkeypatch.setattr(LocalPusher, "submit", lambda self, job: spawned.append(job))
    workspace, key = bootstrap_owner(stack)
    rt = lambda_handler.build_runtime(Settings())
    lambda_handler._runtime = rt
    store, now = rt.ctx.store, rt.ctx.clock.now()
    ws = store.get_workspace(workspace)
    pool = WorkPool(workspace_id=ws.id, name="host", type="local:push", created=now, updated=now,
                    base_job_template=default_job_template("local:push"))
    queue = WorkQueue(workspace_id=ws.id, pool_id=pool.id, name="default", created=now)
    store.create_work_pool(pool, queue)
    store.create_deployment(Deployment(workspace_id=ws.id, flow_name="f", name="d", entrypoint="f.py:f",
                                       pool_id=pool.id, queue_id=queue.id,
                                       job_variables={"command": "cat /proc/self/environ"},
                                       created=now, updated=now))
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    run = client.create_flow_run(client.read_deployment_by_name("f/d")["id"])
    lambda_handler.tick_handler({"source": lambda_handler.WAKE_SOURCE}, LambdaContext(f"{STACK}-tick"))
    done = wait_for_state(client, run["id"], {"CRASHED", "COMPLETED", "FAILED"}, timeout=10)
    assert done["state"]["type"] == "CRASHED" and "PUSHPOOL_HOST_PROCESSES" in done["state"]["message"]
    assert spawned == []


def test_the_dashboard_signs_in_and_lists_runs_through_the_function_url(stack, lambda_env):
    import re

    import httpx

    workspace, key = bootstrap_owner(stack)
    client = PushpoolClient(api_url=lambda_env.url, api_key=key, workspace=workspace)
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template(), paused=True)
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE)
    run = client.create_flow_run(dep["id"])
    with httpx.Client(base_url=lambda_env.url, follow_redirects=False) as browser:
        assert browser.get("/").headers["location"] == "/sign-in"
        signed_in = browser.post("/sign-in", data={"key": key, "next": f"/w/{workspace}/runs"})
        cookie = signed_in.headers["set-cookie"]
        assert signed_in.status_code == 303 and "HttpOnly" in cookie
        assert "Secure" in cookie  # a Function URL is https: the cookie is never sent in the clear
        # (the bridge here is plain http, so the test sends the cookie as a browser on https would)
        browser.headers["Cookie"] = cookie.split(";", 1)[0]
        browser.cookies.clear()
        runs = browser.get(f"/w/{workspace}/runs")
        assert runs.status_code == 200 and run["name"] in runs.text
        assert "default-src 'self'" in runs.headers["content-security-policy"]
        page = browser.get(f"/w/{workspace}/runs/{run['id']}")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert browser.post(f"/w/{workspace}/runs/{run['id']}/cancel", data={"csrf": token}).status_code == 303
    assert client.read_flow_run(run["id"])["state"]["type"] in ("CANCELLED", "CANCELLING")


def test_a_tick_writes_its_measurements_as_cloudwatch_emf_lines(stack, lambda_env, tmp_path, capsys):
    """Issue 27: on Lambda the same measurements as /metrics go into the function's log in the Embedded Metric
    Format (no CloudWatch API call): CloudWatch reads the _aws block's metric definitions and the values."""
    a_run_due_now(stack, lambda_env, tmp_path)
    capsys.readouterr()
    lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=75))
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    by_metric: dict[str, list[dict]] = {}
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "pushpool" and isinstance(document["_aws"]["Timestamp"], int)
        [metric] = directive["Metrics"]
        for dimension in directive["Dimensions"][0]:  # every dimension is a member of the document
            assert isinstance(document[dimension], str)
        by_metric.setdefault(metric["Name"], []).append(document)
    passes = {d["Pass"] for d in by_metric["TickPassDuration"]}
    assert passes == {"scheduler", "dispatcher", "reconciler", "automations"}
    lateness = [d for d in by_metric["DispatchLateness"] if "PoolType" not in d]  # what the alarm reads
    assert len(lateness) == 1 and lateness[0]["DispatchLateness"] >= 0
    assert {d["State"] for d in by_metric["FlowRunTransitions"]} >= {"PENDING"}
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Seconds"
               for d in by_metric["TickPassDuration"])
    assert "TickErrors" not in by_metric


def test_the_tick_works_through_a_backfill_on_dynamodb(stack, lambda_env, tmp_path):
    """A backfill asked for through the Function URL; each scheduled tick makes its next runs (at most max_active
    active) and dispatches them, its progress kept in DynamoDB."""
    pusher, client = a_recording_pool(stack, lambda_env, tmp_path)
    dep = client.apply_deployment(flow_name="f", name="d", entrypoint="f.py:f", work_pool_name="fast",
                                  schedules=[{"cron": "0 6 * * *"}])
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    backfill = client.request("POST", client.ws(f"/deployments/{dep['id']}/backfills"), json={
        "start": (end - timedelta(days=5)).isoformat(), "end": end.isoformat(), "max_active": 2})
    assert backfill["total"] == 5
    for expected in (2, 4, 5):
        lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=30))
        assert len(pusher.jobs) == expected
        for job in pusher.jobs[expected - 2 if expected < 5 else 4:]:
            for step in ("RUNNING", "COMPLETED"):
                client.set_flow_run_state(job.flow_run_id, step)
    lambda_handler.tick_handler(SCHEDULE_EVENT, LambdaContext(f"{STACK}-tick", timeout_seconds=30))
    done = client.request("GET", client.ws(f"/backfills/{backfill['id']}"))
    assert done["state"] == "COMPLETED" and done["progress"]["finished"] == {"COMPLETED": 5}
    scheduled = sorted(client.read_flow_run(job.flow_run_id)["scheduled_time"] for job in pusher.jobs)
    assert scheduled == [(end - timedelta(days=5 - i, hours=-6)).isoformat().replace("+00:00", "Z")
                         for i in range(5)]
