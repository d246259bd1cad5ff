"""AWS for tests: moto's server on 127.0.0.1 (in a thread, spoken to over HTTP by boto3 via
AWS_ENDPOINT_URL), and a container simulator for ECS tasks.

ECS tasks stay RUNNING (moto's "manual" progression with a huge step count) until the
simulator stops them with the exit code of the command it really ran, or with a
failure such as an image pull error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.aws_rules import ECS_SERVICE_ROLE, AwsRules, StrictAws
from tests.fakes.containers import run_as_container
from tests.fakes.net import free_port

ACCOUNT = "123456789012"
REGION = "eu-west-1"



@dataclass
class Moto:
    url: str
    #: What AWS enforces that moto does not (tests/fakes/aws_rules.py), in front of every request.
    rules: AwsRules = field(default_factory=AwsRules)

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=60)  # a busy machine: moto resets slowly
        self.rules.reset()
        self.freeze_tasks()

    def create_ecs_service_role(self) -> None:
        """The ECS service-linked role an account has once ECS was used in it, already propagated."""
        self.client("iam").create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
        self.rules._state["created"].pop(f"role-name:{ECS_SERVICE_ROLE}", None)

    def freeze_tasks(self) -> None:
        httpx.post(f"{self.url}/moto-api/state-manager/set-transition",
                   json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}})

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    # ------------------------------------------------------------------ ECS task state (moto's own objects)
    @staticmethod
    def tasks(cluster: str = "default", region: str = REGION) -> dict[str, Any]:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][region].tasks.get(cluster, {})

    def task(self, arn: str) -> Any:
        cluster = arn.split(":")[5].split("/")[1]
        for task in self.tasks(cluster, arn.split(":")[3]).values():
            if task.task_arn == arn:
                return task
        raise KeyError(arn)

    def stop(self, arn: str, exit_code: int | None = 0, stop_code: str | None = "EssentialContainerExited",
             reason: str = "Essential container in task exited", container_reason: str | None = None) -> None:
        task = self.task(arn)
        task.status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason
        container = task.containers[0]
        container.last_status = "STOPPED"
        container.exitCode = exit_code
        if container_reason:
            container.reason = container_reason


def serialise_dynamodb() -> None:
    """Make moto's DynamoDB apply one request at a time, as DynamoDB does per item.

    moto's server handles requests in threads without a lock around the backend, so a
    transaction's condition check and its writes can interleave with another
    request's; real DynamoDB never lets that happen. One lock around every backend
    call gives the tests DynamoDB's serialisability (and nothing more).
    """
    import functools
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_pushpool_serialised", False):
        return
    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "get_item", "query", "transact_write_items",
                 "batch_write_item", "batch_get_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, __original=original, **kwargs):
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, functools.wraps(original)(locked))
    DynamoDBBackend._pushpool_serialised = True


def start_moto() -> tuple[Moto, Any]:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    rules = AwsRules()

    class StrictMotoServer(ThreadedMotoServer):
        """moto's threaded server with :class:`~tests.fakes.aws_rules.StrictAws` in front of its app."""

        def _server_entry(self) -> None:
            app = StrictAws(DomainDispatcherApplication(create_backend_app), rules)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    serialise_dynamodb()
    port = free_port()
    server = StrictMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    moto = Moto(f"http://127.0.0.1:{port}", rules)
    moto.freeze_tasks()
    return moto, server


class ContainerSimulator:
    """Runs what a task would run: the command and environment moto recorded, in a local directory."""

    def __init__(self, moto: Moto, workdir: Path) -> None:
        self.moto, self.workdir = moto, workdir

    def recorded(self, arn: str) -> tuple[list[str], dict[str, str]]:
        override = self.moto.task(arn).overrides["containerOverrides"][0]
        env = {e["name"]: e["value"] for e in override.get("environment", [])}
        return list(override.get("command") or []), env

    def run(self, arn: str, timeout: float = 60) -> int:
        command, env = self.recorded(arn)
        code, self.output = run_as_container(command, env, self.workdir, timeout)
        self.moto.stop(arn, exit_code=code)
        return code


def account_snapshot(aws: Moto) -> dict:
    """What an account holds, by kind: to prove a step created nothing, or teardown removed everything."""
    iam, ec2, ecs, ecr, logs = (aws.client(s) for s in ("iam", "ec2", "ecs", "ecr", "logs"))
    return {
        "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"]),
        "users": sorted(u["UserName"] for u in iam.list_users()["Users"]),
        "keys": sorted(k["AccessKeyId"] for u in iam.list_users()["Users"]
                       for k in iam.list_access_keys(UserName=u["UserName"])["AccessKeyMetadata"]),
        "clusters": sorted(c["clusterArn"] for c in ecs.describe_clusters(clusters=ecs.list_clusters()["clusterArns"])[
            "clusters"] if c["status"] == "ACTIVE"),  # a deleted cluster stays listed as INACTIVE
        "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
        "subnets": sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]),
        "groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
        "gateways": sorted(g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]),
        "repositories": sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"]),
        "log_groups": sorted(g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]),
    }
