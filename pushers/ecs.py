"""``ecs:push``: each flow run is one ECS task (Fargate, Fargate Spot, EC2 or a capacity provider strategy).

* The task definition is reused while its content is unchanged (``ecs_taskdef``).
* ``RunTask`` carries ``clientToken`` = the run's idempotency key and ``startedBy`` = the run id without its
  hyphens (``started_by_of``: ECS allows at most 36 letters, digits, ``-``, ``/`` and ``_``). A resubmission
  first looks for a running task of the run (``ListTasks`` with ``startedBy`` as its only filter, as ECS
  requires), then sends the same ``clientToken``: ECS answers the task it started for it, or — when the
  request differs (a new run token) — ``ConflictException`` naming that task, which is adopted. So a crash
  between claim and record never starts a second task.
* The container gets the runner command and the run's environment (its run token, never a user's key) as
  overrides; an environment too long for them (RunTask allows 8,192 characters) goes into the task
  definition, and only the run's own three variables stay in the overrides.
* ``assignPublicIp`` is sent on Fargate only (ECS refuses it for EC2); tags are made to fit ECS's rules.
* ``status`` batches ``DescribeTasks`` (100 a call) and explains failures: exit codes, 137 = out of memory,
  image pull failures, tasks that failed to start or vanished, spot interruptions and other stop codes.
* Errors are classified by code: ``ClientException`` from RunTask (a role IAM has not propagated yet, the
  cluster's provisioning quota) is retried; so are throttling and server errors.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote

from pushpool.pushers.aws_common import aws_client, error_code, translate
from pushpool.pushers.base import (
    InfraState,
    InfraStatus,
    Job,
    LogPage,
    PermanentPusherError,
    PusherContext,
    PusherError,
    Submission,
    TransientPusherError,
    classify_exit_code,
)
from pushpool.pushers.ecs_taskdef import TaskDefinitions, log_settings, render
from pushpool.pushers.ecs_template import VARIABLES, on_fargate
from pushpool.pushers.templates import job_template

RUNNER_COMMAND = ["pushpool-runner"]
#: RunTask's limit on the length of ``overrides.containerOverrides``.
MAX_OVERRIDES_CHARS = 8192
#: The environment variables each run has of its own (the rest may live in the task definition).
RUN_ENV = ("PUSHPOOL_API_URL", "PUSHPOOL_FLOW_RUN_ID", "PUSHPOOL_RUN_TOKEN")
#: ECS stop codes (DescribeTasks ``stopCode``) as a person reads them.
STOP_CODES = {
    "SpotInterruption": "the Spot capacity was reclaimed by AWS",
    "TerminationNotice": "the host was terminated",
    "ServiceSchedulerInitiated": "stopped by the ECS service scheduler",
    "UserInitiated": "stopped by a user or StopTask",
}
STARTING = {"PROVISIONING", "PENDING", "ACTIVATING"}
CAPACITY_REASONS = ("Capacity is unavailable", "RESOURCE:", "AGENT")
log = logging.getLogger(__name__)


def parse_task_arn(arn: str) -> tuple[str, str, str]:
    """(region, cluster, task id) of ``arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID``."""
    parts = arn.split(":")
    if len(parts) < 6 or not parts[5].startswith("task/") or parts[5].count("/") != 2:
        raise PermanentPusherError(f"not an ECS task ARN in the long format: {arn!r}")
    _, cluster, task_id = parts[5].split("/")
    return parts[3], cluster, task_id


def console_url(region: str, cluster: str, task_id: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/{task_id}/configuration"
            f"?region={region}")


def logs_console_url(region: str, group: str, stream: str) -> str:
    def enc(text: str) -> str:
        return quote(text, safe="").replace("%", "$25")
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logsV2:log-groups/log-group/{enc(group)}/log-events/{enc(stream)}")


def started_by_of(key: str) -> str:
    """The task's ``startedBy``: the run id's 32 hex digits, and ``-r<n>`` for a crash retry (at most 36 characters
    of ``[A-Za-z0-9_/-]``, as ECS requires)."""
    run_id, retry, attempt = key.partition("-r")
    return run_id.replace("-", "") + (f"-r{attempt}" if retry else "")


def task_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """``tags`` as ECS takes them: at most 50, keys 1–128 and values up to 256 of letters, digits, spaces and
    ``_.:/=+-@`` (anything else becomes ``_``), no key in the reserved ``aws:`` space."""
    out = []
    for key, value in sorted(tags.items()):
        key, value = re.sub(r"[^\w\s.:/=+@-]", "_", key)[:128], re.sub(r"[^\w\s.:/=+@-]", "_", value)[:256]
        if key and not key.lower().startswith("aws:"):
            out.append({"key": key, "value": value})
    return out[:50]


class EcsPusher:
    def __init__(self, context: PusherContext) -> None:
        self.context = context
        self.taskdefs = TaskDefinitions()
        self._lock = threading.Lock()
        #: (region, vpc id or "default") → (subnets, security groups): looked up once, not per run.
        self._networks: dict[tuple[str, str], tuple[list[str], list[str]]] = {}

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return job_template(VARIABLES)

    # ------------------------------------------------------------------ clients
    def client(self, service: str, config: dict[str, Any], region: str | None = None) -> Any:
        region = region or config.get("region") or (config.get("aws_credentials") or {}).get("region_name")
        if not region:
            raise PermanentPusherError("no AWS region: set the 'region' job variable of the pool")
        credentials = config.get("aws_credentials")
        if credentials is not None and not isinstance(credentials, dict):
            raise PermanentPusherError("aws_credentials must reference an aws-credentials block, "
                                       "e.g. \"{{ pushpool.blocks.my-aws }}\"")
        return aws_client(service, credentials, region)

    # ------------------------------------------------------------------ submit
    def submit(self, job: Job) -> Submission:
        config = job.configuration
        ecs = self.client("ecs", config)
        region = ecs.meta.region_name
        cluster = config.get("cluster") or "default"
        started_by = started_by_of(job.idempotency_key)
        if job.attempt > 1:
            existing = self._existing_task(ecs, cluster, started_by)
            if existing:
                return self._submission(existing, config)
        overrides, definition_env = self._overrides(job)
        task_definition = config.get("task_definition_arn") or self.taskdefs.ensure(
            ecs, region, render(job, region, definition_env), job.pool_name)
        params = self._run_task_params(job, cluster, task_definition, started_by, overrides)
        try:
            response = ecs.run_task(**params)
        except Exception as exc:  # noqa: BLE001
            adopted = self._conflicting_task(exc)
            if adopted:  # a task started for this client token by an earlier attempt
                return self._submission(adopted, config)
            raise self._run_task_error(exc, cluster, region) from exc
        if not response.get("tasks"):
            failures = response.get("failures") or [{"reason": "no task started"}]
            reason = "; ".join(f"{f.get('reason')}{': ' + f['detail'] if f.get('detail') else ''}" for f in failures)
            if any(r in reason for r in CAPACITY_REASONS):
                raise TransientPusherError(f"ecs:RunTask: no capacity yet ({reason})")
            raise PermanentPusherError(f"ecs:RunTask started no task: {reason}")
        return self._submission(response["tasks"][0]["taskArn"], config)

    def _overrides(self, job: Job) -> tuple[dict[str, Any], dict[str, str]]:
        """RunTask's overrides and the environment that goes into the task definition instead (none, unless the
        whole environment would make the overrides longer than ECS allows)."""
        container = job.configuration.get("container_name") or "pushpool"

        def overrides(env: dict[str, str]) -> dict[str, Any]:
            return {"containerOverrides": [{"name": container, "command": job.command or RUNNER_COMMAND,
                                            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())]}]}

        whole = overrides(job.env)
        if len(json.dumps(whole["containerOverrides"], separators=(",", ":"))) <= MAX_OVERRIDES_CHARS:
            return whole, {}
        own = overrides({k: v for k, v in job.env.items() if k in RUN_ENV})
        if len(json.dumps(own["containerOverrides"], separators=(",", ":"))) > MAX_OVERRIDES_CHARS:
            raise PermanentPusherError("the run's command is too long for ECS RunTask overrides (8,192 characters)")
        return own, {k: v for k, v in job.env.items() if k not in RUN_ENV}

    def _run_task_params(self, job: Job, cluster: str, task_definition: str, started_by: str,
                         overrides: dict[str, Any]) -> dict[str, Any]:
        config = job.configuration
        tags = {**{str(k): str(v) for k, v in (config.get("labels") or {}).items()}, **job.labels}
        params: dict[str, Any] = {
            "cluster": cluster, "taskDefinition": task_definition, "count": 1, "startedBy": started_by,
            "clientToken": job.idempotency_key, "overrides": overrides, "tags": task_tags(tags),
        }
        strategy = config.get("capacity_provider_strategy")
        launch_type = config.get("launch_type") or "FARGATE"
        if strategy:
            params["capacityProviderStrategy"] = strategy  # a strategy and a launch type exclude each other
        elif launch_type == "FARGATE_SPOT":
            params["capacityProviderStrategy"] = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
        else:
            params["launchType"] = launch_type
        params["networkConfiguration"] = config.get("network_configuration") or self._network(config)
        return params

    def _network(self, config: dict[str, Any]) -> dict[str, Any]:
        subnets, groups = list(config.get("subnets") or []), list(config.get("security_groups") or [])
        if not subnets:
            subnets, default_group = self._default_vpc_network(config)
            groups = groups or default_group
        awsvpc: dict[str, Any] = {"subnets": subnets, "securityGroups": groups}
        if on_fargate(config):  # ECS: "Assign public IP is not supported for this launch type" on EC2
            awsvpc["assignPublicIp"] = "DISABLED" if config.get("assign_public_ip") is False else "ENABLED"
        return {"awsvpcConfiguration": awsvpc}

    def _default_vpc_network(self, config: dict[str, Any]) -> tuple[list[str], list[str]]:
        ec2 = self.client("ec2", config)
        key = (ec2.meta.region_name, config.get("vpc_id") or "default")
        with self._lock:
            if key in self._networks:
                return self._networks[key]
        try:
            vpc_id = config.get("vpc_id")
            if not vpc_id:
                vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
                if not vpcs:
                    raise PermanentPusherError("no subnets configured and the region has no default VPC: set the "
                                               "'subnets' job variable (provision-infra creates a VPC)")
                vpc_id = vpcs[0]["VpcId"]
            subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
            groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                           {"Name": "group-name", "Values": ["default"]}])
        except PermanentPusherError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "ec2:DescribeSubnets") from exc
        network = [s["SubnetId"] for s in subnets][:16], [g["GroupId"] for g in groups["SecurityGroups"]][:1]
        with self._lock:
            self._networks[key] = network
        return network

    @staticmethod
    def _existing_task(ecs: Any, cluster: str, started_by: str) -> str | None:
        """A task of the run ECS still runs (``startedBy`` must be ListTasks' only filter; a task that already
        stopped is found through the client token instead)."""
        try:
            arns = ecs.list_tasks(cluster=cluster, startedBy=started_by)["taskArns"]
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "ecs:ListTasks") from exc
        return arns[0] if arns else None

    @staticmethod
    def _conflicting_task(exc: BaseException) -> str | None:
        """The task ECS names when a client token was used before with other parameters (``ConflictException``)."""
        if error_code(exc) != "ConflictException":
            return None
        ids = getattr(exc, "response", {}).get("resourceIds") or []
        return next((arn for arn in ids if ":task/" in arn), None)

    @staticmethod
    def _run_task_error(exc: BaseException, cluster: str, region: str) -> Exception:
        code = error_code(exc)
        if code == "ClusterNotFoundException":
            return PermanentPusherError(
                f"ECS cluster {cluster!r} does not exist in {region}: create it (pushpool work-pool "
                "provision-infra POOL does) or set the pool's 'cluster' job variable")
        if code == "ClientException":  # a role not yet propagated, the cluster's provisioning quota: try later
            message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc))
            return TransientPusherError(f"ecs:RunTask (ClientException): {message}")
        return translate(exc, "ecs:RunTask", "check the image, roles, subnets and security groups of the pool")

    def _submission(self, task_arn: str, config: dict[str, Any]) -> Submission:
        region, cluster, task_id = parse_task_arn(task_arn)
        logs = log_settings(config, region)
        logs_url = None
        if logs:
            stream = f"{logs['prefix']}/{config.get('container_name') or 'pushpool'}/{task_id}"
            logs_url = logs_console_url(region, logs["group"], stream)
        return Submission(infra_id=task_arn, console_url=console_url(region, cluster, task_id), logs_url=logs_url)

    # ------------------------------------------------------------------ watch, stop, logs
    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        groups: dict[tuple[str, str], list[str]] = {}
        for arn in infra_ids:
            region, cluster, _ = parse_task_arn(arn)
            groups.setdefault((region, cluster), []).append(arn)
        out: dict[str, InfraStatus] = {}
        failed: PusherError | None = None
        for (region, cluster), arns in groups.items():
            try:
                out.update(self._statuses(region, cluster, arns))
            except PusherError as exc:  # one region or cluster failing leaves the others' news
                log.warning("ecs:DescribeTasks in %s/%s failed: %s", region, cluster, exc)
                failed = exc
        if failed is not None and not out:
            raise failed
        return out

    def _statuses(self, region: str, cluster: str, arns: list[str]) -> dict[str, InfraStatus]:
        ecs = self.client("ecs", self.context.pool_config, region)
        out: dict[str, InfraStatus] = {}
        for start in range(0, len(arns), 100):
            batch = arns[start:start + 100]
            try:
                found = ecs.describe_tasks(cluster=cluster, tasks=batch)
            except Exception as exc:  # noqa: BLE001
                if error_code(exc) != "ClusterNotFoundException":
                    raise translate(exc, "ecs:DescribeTasks") from exc
                found = {"tasks": [], "failures": []}
            tasks = {t["taskArn"]: t for t in found.get("tasks", [])}
            for arn in batch:
                out[arn] = classify(tasks.get(arn), self.context.pool_config.get("container_name"))
        return out

    def cancel(self, infra_id: str) -> None:
        region, cluster, _ = parse_task_arn(infra_id)
        ecs = self.client("ecs", self.context.pool_config, region)
        try:
            ecs.stop_task(cluster=cluster, task=infra_id, reason="Cancelled by pushpool")
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("InvalidParameterException", "ClusterNotFoundException"):
                return  # already gone
            raise translate(exc, "ecs:StopTask") from exc

    def cleanup(self, infra_id: str) -> None:
        """Nothing per run: tasks are removed by ECS, task definitions are shared."""

    def logs(self, infra_id: str, tail: int | None = None, cursor: str | None = None) -> LogPage:
        region, _, task_id = parse_task_arn(infra_id)
        config = self.context.pool_config
        settings = log_settings(config, region)
        if settings is None:
            return LogPage(lines=[], cursor=None)
        stream = f"{settings['prefix']}/{config.get('container_name') or 'pushpool'}/{task_id}"
        params: dict[str, Any] = {"logGroupName": settings["group"], "logStreamName": stream}
        if cursor:
            params.update(nextToken=cursor, startFromHead=True)
        elif tail:
            params.update(limit=tail, startFromHead=False)
        else:
            params["startFromHead"] = True
        logs = self.client("logs", config, region)
        try:
            page = logs.get_log_events(**params)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException":
                return LogPage(lines=[], cursor=cursor)  # the stream appears when the container starts
            raise translate(exc, "logs:GetLogEvents") from exc
        return LogPage(lines=[e["message"] for e in page.get("events", [])], cursor=page.get("nextForwardToken"))


def classify(task: dict[str, Any] | None, container_name: str | None = None) -> InfraStatus:
    """An InfraStatus (with a reason a person can act on) for a DescribeTasks entry."""
    if task is None:
        return InfraStatus(InfraState.MISSING, reason="the ECS task no longer exists (MISSING)")
    last = task.get("lastStatus")
    if last in STARTING:
        return InfraStatus(InfraState.PENDING)
    if last != "STOPPED":
        return InfraStatus(InfraState.RUNNING)
    containers = task.get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == container_name), containers[0])
    stop_code, stopped_reason = task.get("stopCode"), task.get("stoppedReason") or ""
    exit_code = container.get("exitCode")
    if "CannotPullContainerError" in stopped_reason or "CannotPullContainerError" in (container.get("reason") or ""):
        return InfraStatus(InfraState.EXITED, exit_code if exit_code not in (None, 0) else 1,
                           f"image pull failed for {container.get('image')!r}: {stopped_reason or container['reason']}")
    if stop_code == "TaskFailedToStart" or "ResourceInitializationError" in stopped_reason:
        return InfraStatus(InfraState.EXITED, exit_code if exit_code not in (None, 0) else 1,
                           f"the task failed to start ({stop_code or 'ResourceInitializationError'}): {stopped_reason}")
    if stop_code in STOP_CODES and exit_code != 0:  # stopped from outside: the exit code is only the signal
        why = f"{STOP_CODES[stop_code]} ({stop_code})"
        return InfraStatus(InfraState.EXITED, 1 if exit_code is None else exit_code,
                           f"{why}: {stopped_reason}" if stopped_reason else why)
    if exit_code is None:
        return InfraStatus(InfraState.EXITED, 1, f"the task stopped without an exit code "
                                                 f"({stop_code or 'no stop code'}): {stopped_reason}")
    if exit_code == 0:
        return InfraStatus(InfraState.EXITED, 0)
    reason = classify_exit_code(exit_code)
    if exit_code == 137:
        reason = "exit code 137: killed, likely out of memory"
    detail = container.get("reason") or (stopped_reason if stop_code == "EssentialContainerExited" else "")
    return InfraStatus(InfraState.EXITED, exit_code, f"{reason} ({detail})" if detail else reason)
