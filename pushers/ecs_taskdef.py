"""ECS task definitions for ``ecs:push``: rendered from the job, registered only when they change.

The definition holds everything that is the same for every run of a deployment (image, cpu/memory, roles,
logging); per-run values (command, environment with the run token) go into RunTask overrides. Each content
has a family of its own (``pushpool_<pool>_<digest>``, :func:`~pushpool.pushers.aws_names.task_family`) and the
digest as a tag, so any control plane — a new process, another Lambda container — finds a definition it has
not seen with one DescribeTaskDefinition of that family's latest revision, and steady state costs no
RegisterTaskDefinition at all (ECS allows about one a second). Two control planes registering the same
content at once (ECS refuses the second: "too many concurrent attempts") look again, and either find the
other's revision or try later.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from pushpool.pushers.aws_common import error_code, translate
from pushpool.pushers.aws_names import task_family
from pushpool.pushers.base import Job, PermanentPusherError, TransientPusherError

HASH_TAG = "pushpool.taskdef-hash"
#: How long to wait for another control plane's registration of the same family before looking again.
CONCURRENT_REGISTRATION_WAIT = 1.0


def log_settings(config: dict[str, Any], region: str) -> dict[str, Any] | None:
    logs = config.get("cloudwatch_logs") or {}
    if logs.get("enabled", True) is False:
        return None
    return {"group": logs.get("log_group") or "/pushpool/flows", "prefix": logs.get("stream_prefix") or "pushpool",
            "region": region}


def render(job: Job, region: str, environment: dict[str, str] | None = None) -> dict[str, Any]:
    """The RegisterTaskDefinition request for ``job`` (without tags); ``environment`` goes into the container
    definition (the environment too long for RunTask's overrides)."""
    config = job.configuration
    image = config.get("image") or job.image
    if not image:
        raise PermanentPusherError("no image: set the deployment's image or the 'image' job variable")
    cpu, memory = int(config.get("cpu") or 256), int(config.get("memory") or 512)
    launch_type = config.get("launch_type") or "FARGATE"
    container: dict[str, Any] = {
        "name": config.get("container_name") or "pushpool",
        "image": image,
        "essential": True,
        "memory": memory,  # container-level memory: required by EC2, harmless on Fargate
    }
    if environment:
        container["environment"] = [{"name": k, "value": v} for k, v in sorted(environment.items())]
    logs = log_settings(config, region)
    if logs:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": logs["group"], "awslogs-region": region, "awslogs-stream-prefix": logs["prefix"],
            "awslogs-create-group": "true"}}
    definition: dict[str, Any] = {
        "family": config.get("family") or "",  # filled in from the content's digest (ensure)
        "containerDefinitions": [container],
        "networkMode": "awsvpc",
        "cpu": str(cpu),
        "memory": str(memory),
        "requiresCompatibilities": ["EC2"] if launch_type == "EC2" else ["FARGATE"],
    }
    if config.get("execution_role_arn"):
        definition["executionRoleArn"] = config["execution_role_arn"]
    if config.get("task_role_arn"):
        definition["taskRoleArn"] = config["task_role_arn"]
    return definition


def content_hash(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:32]


class TaskDefinitions:
    """Finds or registers task definitions by content hash; thread-safe, one registration per change."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def ensure(self, ecs: Any, region: str, definition: dict[str, Any], pool_name: str) -> str:
        """The ARN of a task definition with ``definition``'s content (registering it when none exists)."""
        digest = content_hash(definition)
        definition = {**definition, "family": definition.get("family") or task_family(pool_name, digest)}
        key = (region, definition["family"], digest)
        with self._lock:  # one registration per content in this process
            if key in self._known:
                return self._known[key]
            arn = self._find(ecs, definition["family"], digest) or self._register(ecs, definition, digest)
            self._known[key] = arn
            return arn

    @staticmethod
    def _find(ecs: Any, family: str, digest: str) -> str | None:
        try:
            found = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("ClientException", "InvalidParameterException"):
                return None  # no such family yet
            raise translate(exc, "ecs:DescribeTaskDefinition") from exc
        tags = {t["key"]: t["value"] for t in found.get("tags", [])}
        definition = found["taskDefinition"]
        if tags.get(HASH_TAG) == digest and definition.get("status", "ACTIVE") == "ACTIVE":
            return definition["taskDefinitionArn"]
        return None

    @classmethod
    def _register(cls, ecs: Any, definition: dict[str, Any], digest: str) -> str:
        try:
            registered = ecs.register_task_definition(**definition, tags=[{"key": HASH_TAG, "value": digest}])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) != "ClientException":
                raise translate(exc, "ecs:RegisterTaskDefinition",
                                "check the image, cpu/memory combination and role ARNs") from exc
            # Another control plane registering this family right now, or a request ECS refuses: the first
            # leaves a revision to find; for the second, trying later repeats ECS's reason until the run gives up.
            time.sleep(CONCURRENT_REGISTRATION_WAIT)
            found = cls._find(ecs, definition["family"], digest)
            if found:
                return found
            message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc))
            raise TransientPusherError(f"ecs:RegisterTaskDefinition (ClientException): {message}") from exc
        return registered["taskDefinition"]["taskDefinitionArn"]
