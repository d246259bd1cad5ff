"""The ECS pusher against moto: task definitions reused, idempotent RunTask, status, cancel, logs, errors."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import replace

import pytest

from pushpool.control_plane.services.templating import render_job_configuration
from pushpool.pushers.base import InfraState, Job, PermanentPusherError, PusherContext, TransientPusherError
from pushpool.pushers.ecs import EcsPusher, started_by_of
from pushpool.pushers.ecs_taskdef import HASH_TAG
from tests.fakes.aws import REGION

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}


def config(**variables) -> dict:
    values = {"region": REGION, "cluster": "flows", "aws_credentials": CREDS, "image": "registry.example/flows:1",
              **variables}
    return render_job_configuration(EcsPusher.default_job_template(), values)


def job(cfg: dict | None = None, attempt: int = 1, run_id: str | None = None) -> Job:
    run_id = run_id or str(uuid.uuid4())
    return Job(flow_run_id=run_id, workspace_id="ws", pool_name="ecs-pool", deployment_name="etl/nightly",
               flow_run_name="brisk-otter", configuration=cfg or config(),
               env={"PUSHPOOL_FLOW_RUN_ID": run_id, "PUSHPOOL_RUN_TOKEN": "ppr_x", "PUSHPOOL_API_URL": "http://cp"},
               labels={"pushpool.flow-run-id": run_id, "pushpool.deployment": "etl/nightly",
                       "pushpool.work-pool": "ecs-pool"}, attempt=attempt)


@pytest.fixture
def pusher(tmp_path, aws):
    return EcsPusher(PusherContext(state_dir=tmp_path, api_url="http://cp",
                                   pool_config=config()))


def task_definitions(aws, prefix="pushpool_ecs-pool_"):
    """Every revision of the pool's families (one family a definition content), by (family, revision)."""
    from moto.ecs.models import ecs_backends

    families = ecs_backends["123456789012"][REGION].task_definitions
    return {(family, revision): d for family, revisions in families.items() if family.startswith(prefix)
            for revision, d in revisions.items()}


def test_submit_runs_one_task_with_the_run_context(pusher, aws):
    j = job()
    submission = pusher.submit(j)
    task = aws.task(submission.infra_id)
    assert task.started_by == j.flow_run_id.replace("-", "")
    # ECS: "Up to 36 letters (uppercase and lowercase), numbers, hyphens (-), forward slash (/), and underscores"
    for attempt in (0, 1, 10):
        key = replace(j, crash_attempt=attempt).idempotency_key
        assert re.fullmatch(r"[A-Za-z0-9/_-]{1,36}", started_by_of(key)), key
    override = task.overrides["containerOverrides"][0]
    assert override["name"] == "pushpool" and override["command"] == ["pushpool-runner"]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert env["PUSHPOOL_RUN_TOKEN"] == "ppr_x" and "PUSHPOOL_API_KEY" not in env
    tags = {t["key"]: t["value"] for t in task.tags}
    assert tags["pushpool.flow-run-id"] == j.flow_run_id and tags["pushpool.work-pool"] == "ecs-pool"
    assert task.launch_type == "FARGATE"
    region, cluster, task_id = REGION, "flows", submission.infra_id.rsplit("/", 1)[1]
    assert submission.console_url == (f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/"
                                      f"{task_id}/configuration?region={region}")
    assert submission.logs_url.endswith(f"log-events/pushpool$252Fpushpool$252F{task_id}")
    [definition] = task_definitions(aws).values()
    container = definition.container_definitions[0]
    assert container["image"] == "registry.example/flows:1" and container["memory"] == 512
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/pushpool/flows"


def test_200_runs_register_the_task_definition_once(pusher, aws):
    for _ in range(200):
        pusher.submit(job())
    assert len(task_definitions(aws)) == 1
    assert len(aws.tasks("flows")) == 200
    # A fresh control plane (empty cache) finds the same definition by its hash tag ...
    restarted = EcsPusher(pusher.context)
    restarted.submit(job())
    assert len(task_definitions(aws)) == 1
    # ... and a changed definition is registered once more.
    restarted.submit(job(config(cpu=1024, memory=2048)))
    restarted.submit(job(config(cpu=1024, memory=2048)))
    revisions = task_definitions(aws)
    assert len(revisions) == 2
    assert {t["key"] for d in revisions.values() for t in d.tags} == {HASH_TAG}


def test_a_resubmission_finds_the_task_it_already_started(pusher, aws):
    first = job()
    submission = pusher.submit(first)
    again = pusher.submit(replace(first, attempt=2))
    assert again.infra_id == submission.infra_id
    assert len(aws.tasks("flows")) == 1


def test_capacity_provider_strategy_replaces_the_launch_type(pusher, aws):
    strategy = [{"capacityProvider": "FARGATE_SPOT", "weight": 3}, {"capacityProvider": "FARGATE", "weight": 1}]
    params = pusher._run_task_params(job(config(capacity_provider_strategy=strategy)), "flows", "td", "x", {})
    assert params["capacityProviderStrategy"] == strategy and "launchType" not in params
    spot = pusher._run_task_params(job(config(launch_type="FARGATE_SPOT")), "flows", "td", "x", {})
    assert spot["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]


@pytest.mark.parametrize("stop, state, exit_code, reason", [
    ({"exit_code": 0}, InfraState.EXITED, 0, None),
    ({"exit_code": 1}, InfraState.EXITED, 1, "exit code 1"),
    ({"exit_code": 137, "container_reason": "OutOfMemoryError: Container killed due to memory usage"},
     InfraState.EXITED, 137, "likely out of memory (OutOfMemoryError"),
    ({"exit_code": None, "stop_code": "TaskFailedToStart",
      "reason": "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"},
     InfraState.EXITED, 1, "image pull failed for 'registry.example/flows:1'"),
    ({"exit_code": None, "stop_code": "TaskFailedToStart",
      "reason": "ResourceInitializationError: unable to pull secrets or registry auth"},
     InfraState.EXITED, 1, "the task failed to start (TaskFailedToStart)"),
])
def test_status_classifies_how_a_task_ended(pusher, aws, stop, state, exit_code, reason):
    arn = pusher.submit(job()).infra_id
    assert pusher.status([arn])[arn].state is InfraState.RUNNING
    aws.stop(arn, **stop)
    status = pusher.status([arn])[arn]
    assert (status.state, status.exit_code) == (state, exit_code)
    assert (reason is None and status.reason is None) or reason in status.reason


def test_status_of_a_vanished_task_is_missing_and_batches_of_many(pusher, aws):
    arns = [pusher.submit(job()).infra_id for _ in range(120)]
    gone = arns[0].rsplit("/", 1)[0] + "/" + "0" * 32
    statuses = pusher.status(arns + [gone])
    assert len(statuses) == 121 and statuses[gone].state is InfraState.MISSING
    assert {s.state for a, s in statuses.items() if a != gone} == {InfraState.RUNNING}


def test_cancel_stops_the_task_with_a_reason(pusher, aws):
    arn = pusher.submit(job()).infra_id
    pusher.cancel(arn)
    task = aws.task(arn)
    assert task.desired_status == "STOPPED" and task.stopped_reason == "Cancelled by pushpool"
    pusher.cancel(arn)  # twice is harmless


def test_logs_are_read_from_cloudwatch(pusher, aws):
    arn = pusher.submit(job()).infra_id
    task_id = arn.rsplit("/", 1)[1]
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/pushpool/flows")
    stream = f"pushpool/pushpool/{task_id}"
    assert pusher.logs(arn).lines == []  # no stream yet: empty, not an error
    logs.create_log_stream(logGroupName="/pushpool/flows", logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/pushpool/flows", logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": f"line {i}"} for i in range(5)])
    page = pusher.logs(arn)
    assert page.lines == [f"line {i}" for i in range(5)] and page.cursor
    assert pusher.logs(arn, tail=2).lines == ["line 3", "line 4"]


def test_missing_cluster_is_permanent_with_the_fix(pusher, aws):
    with pytest.raises(PermanentPusherError, match="ECS cluster 'nope' does not exist in eu-west-1: create it"):
        pusher.submit(job(config(cluster="nope")))


def test_throttling_is_transient(pusher, aws, monkeypatch):
    from botocore.exceptions import ClientError

    def run_task(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")

    monkeypatch.setattr(pusher.client("ecs", config()), "run_task", run_task)  # the pusher's own (kept) client
    with pytest.raises(TransientPusherError, match="ThrottlingException: Rate exceeded"):
        pusher.submit(job())


def test_no_region_and_bad_credentials_are_clear(tmp_path, aws):
    pusher = EcsPusher(PusherContext(state_dir=tmp_path, api_url="x"))
    cfg = config()
    cfg.pop("region")
    cfg["aws_credentials"] = {}
    with pytest.raises(PermanentPusherError, match="no AWS region"):
        pusher.submit(job(cfg))
    with pytest.raises(PermanentPusherError, match="aws-credentials block"):
        pusher.submit(job(config(aws_credentials="{{ pushpool.blocks.x }}")))


# ---------------------------------------------------------------------------------------------------------------
# What ECS refuses and moto let through (issue 23): each of these failed against the strict fake
# (tests/fakes/aws_rules.py) before the pusher was changed.


def ec2_container_instance(aws, cluster: str = "flows") -> None:
    """An EC2 instance registered with the cluster, so moto places EC2 tasks."""
    ec2 = aws.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large")["Instances"][0]
    document = json.dumps({"instanceId": instance["InstanceId"], "region": REGION, "accountId": "123456789012"})
    aws.client("ecs").register_container_instance(cluster=cluster, instanceIdentityDocument=document)


def test_an_ec2_task_is_not_given_a_public_ip(pusher, aws):
    ec2_container_instance(aws)
    arn = pusher.submit(job(config(launch_type="EC2"))).infra_id
    awsvpc = aws.task(arn).network_configuration["awsvpcConfiguration"]
    assert "assignPublicIp" not in awsvpc
    fargate = aws.task(pusher.submit(job()).infra_id).network_configuration["awsvpcConfiguration"]
    assert fargate["assignPublicIp"] == "ENABLED"
    assert "InvalidParameterException" not in aws.rules.counts("RunTask")


def test_a_new_control_plane_finds_every_deployments_definition_without_registering(pusher, aws, tmp_path):
    images = [f"registry.example/flows:{i}" for i in range(3)]
    for image in images:
        pusher.submit(job(config(image=image)))
    assert aws.rules.counts("RegisterTaskDefinition") == {"ok": 3}
    fresh = EcsPusher(PusherContext(state_dir=tmp_path, api_url="http://cp", pool_config=config()))  # a new process
    for image in images * 2:
        fresh.submit(job(config(image=image)))
    assert aws.rules.counts("RegisterTaskDefinition") == {"ok": 3}  # nothing registered again
    assert len(task_definitions(aws)) == 3


def test_control_planes_registering_one_definition_at_once_both_submit(aws, tmp_path):
    import threading

    pushers = [EcsPusher(PusherContext(state_dir=tmp_path, api_url="http://cp", pool_config=config()))
               for _ in range(4)]  # four processes (Lambda containers), each with its own lock and cache
    aws.rules.register_seconds = 0.3  # long enough that they overlap
    results: list[object] = []
    threads = [threading.Thread(target=lambda p=p: results.append(p.submit(job(config(image="r.example/new:1")))))
               for p in pushers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(hasattr(r, "infra_id") for r in results), results
    assert aws.rules.counts("RegisterTaskDefinition").get("ClientException", 0) >= 1  # ECS refused the overlap
    assert len(aws.tasks("flows")) == 4


def test_a_role_iam_has_not_propagated_is_retried_not_fatal(pusher, aws):
    aws.rules.propagation_seconds = 0.6
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                 "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]})
    role = aws.client("iam").create_role(RoleName="fresh-execution", AssumeRolePolicyDocument=trust)["Role"]
    fresh = job(config(execution_role_arn=role["Arn"]))
    with pytest.raises(TransientPusherError, match="unable to assume the role"):
        pusher.submit(fresh)
    time.sleep(0.7)
    assert pusher.submit(replace(fresh, attempt=2)).infra_id


def test_a_resubmission_adopts_a_stopped_task_through_its_client_token(pusher, aws):
    first = job()
    arn = pusher.submit(first).infra_id
    aws.stop(arn, exit_code=0)  # ListTasks (RUNNING only) no longer finds it
    renewed = replace(first, attempt=2, env={**first.env, "PUSHPOOL_RUN_TOKEN": "ppr_renewed"})  # a new token
    assert pusher.submit(renewed).infra_id == arn  # ECS: ConflictException naming the task, adopted
    assert aws.rules.counts("RunTask") == {"ok": 1, "ConflictException": 1}
    assert len(aws.tasks("flows")) == 1


def test_a_large_environment_moves_into_the_task_definition(pusher, aws):
    big = {f"SETTING_{i}": "x" * 200 for i in range(60)}  # 12,000+ characters: more than RunTask's overrides take
    plain = job()
    submission = pusher.submit(replace(plain, env={**plain.env, **big}))
    override = aws.task(submission.infra_id).overrides["containerOverrides"][0]
    assert sorted(e["name"] for e in override["environment"]) == ["PUSHPOOL_API_URL", "PUSHPOOL_FLOW_RUN_ID",
                                                                   "PUSHPOOL_RUN_TOKEN"]
    [definition] = task_definitions(aws).values()
    assert {e["name"] for e in definition.container_definitions[0]["environment"]} == set(big)


def test_labels_become_tags_ecs_accepts(pusher, aws):
    labels = {"team": "data eng", "cost/center": "42", "aws:reserved": "x", "émoji?": "yes!", "k" * 200: "v"}
    arn = pusher.submit(job(config(labels=labels))).infra_id
    tags = {t["key"]: t["value"] for t in aws.task(arn).tags}
    assert tags["team"] == "data eng" and tags["cost/center"] == "42" and tags["émoji_"] == "yes_"
    assert "aws:reserved" not in tags and "k" * 128 in tags


def test_a_cluster_at_its_provisioning_quota_is_retried(pusher, aws):
    aws.rules.provisioning_limit = 0
    with pytest.raises(TransientPusherError, match="provisioning capacity"):
        pusher.submit(job())


@pytest.mark.parametrize("stop_code, reason, expected", [
    ("SpotInterruption", "Your Spot Task was interrupted.", "the Spot capacity was reclaimed by AWS"),
    ("TerminationNotice", "Host EC2 (instance i-1) terminated.", "the host was terminated"),
    ("UserInitiated", "Task stopped by user", "stopped by a user or StopTask"),
])
def test_stops_from_outside_say_why(pusher, aws, stop_code, reason, expected):
    arn = pusher.submit(job()).infra_id
    aws.stop(arn, exit_code=143, stop_code=stop_code, reason=reason)
    status = pusher.status([arn])[arn]
    assert status.finished and status.reason == f"{expected} ({stop_code}): {reason}"


def test_clients_are_made_once_and_shared_by_threads(pusher, aws):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: pusher.client("ecs", config()), range(32)))
    assert len({id(c) for c in clients}) == 1


def test_one_region_failing_leaves_the_others_status(pusher, aws, monkeypatch):
    from botocore.exceptions import ClientError

    arn = pusher.submit(job()).infra_id
    elsewhere = arn.replace(REGION, "us-east-2")

    def broken(**kwargs):
        raise ClientError({"Error": {"Code": "ServiceUnavailableException", "Message": "down"}}, "DescribeTasks")

    monkeypatch.setattr(pusher.client("ecs", config(), "us-east-2"), "describe_tasks", broken)
    statuses = pusher.status([arn, elsewhere])
    assert statuses[arn].state is InfraState.RUNNING and elsewhere not in statuses
