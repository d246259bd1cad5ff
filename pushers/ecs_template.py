"""The default base job template of ``ecs:push`` pools: the job variables, their meaning, and ECS's rules
about them that a JSON schema cannot say (checked when a deployment or run is saved)."""

from __future__ import annotations

from typing import Any

from pushpool.control_plane.errors import InvalidInput
from pushpool.pushers.base import MAX_RUNTIME_SECONDS
from pushpool.pushers.templates import block_variable

VARIABLES: dict[str, dict[str, Any]] = {
    "aws_credentials": block_variable("An aws-credentials block, as \"{{ pushpool.blocks.NAME }}\"; empty: the "
                                      "control plane's own AWS identity."),
    "region": {"type": "string", "description": "AWS region, e.g. eu-west-1."},
    "cluster": {"type": "string", "default": "default", "description": "ECS cluster name or ARN."},
    "launch_type": {"enum": ["FARGATE", "FARGATE_SPOT", "EC2"], "default": "FARGATE"},
    "capacity_provider_strategy": {"type": "array", "items": {"type": "object"},
                                   "description": "When set, used instead of launch_type."},
    "image": {"type": "string", "description": "Image to run (linux/amd64); defaults to the deployment's."},
    "cpu": {"type": "integer", "default": 256, "description": "CPU units (1024 = 1 vCPU)."},
    "memory": {"type": "integer", "default": 512, "description": "Memory in MiB."},
    "env": {"type": "object", "additionalProperties": {"type": "string"}},
    "command": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "Instead of the pushpool runner."},
    "container_name": {"type": "string", "default": "pushpool"},
    "task_role_arn": {"type": "string", "description": "Role the flow's code runs as."},
    "execution_role_arn": {"type": "string", "description": "Role ECS uses to pull the image and write logs."},
    "vpc_id": {"type": "string", "description": "VPC whose subnets to use when 'subnets' is empty."},
    "subnets": {"type": "array", "items": {"type": "string"}},
    "security_groups": {"type": "array", "items": {"type": "string"}},
    "assign_public_ip": {"type": "boolean", "default": True,
                         "description": "Give Fargate tasks a public IP (needed to pull images in public subnets "
                                        "without a NAT gateway). Not sent for EC2: ECS does not allow it there."},
    "network_configuration": {"type": "object", "description": "Raw RunTask networkConfiguration (overrides the "
                                                               "network variables)."},
    "cloudwatch_logs": {"type": "object", "default": {"enabled": True, "log_group": "/pushpool/flows",
                                                      "stream_prefix": "pushpool", "retention_days": 30},
                        "properties": {"enabled": {"type": "boolean"}, "log_group": {"type": "string"},
                                       "stream_prefix": {"type": "string"},
                                       "retention_days": {"type": "integer", "minimum": 1}}},
    "task_definition_arn": {"type": "string", "description": "Bring your own task definition (its container must "
                                                             "be named container_name)."},
    "family": {"type": "string", "description": "Task definition family (default pushpool_<pool>)."},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Task tags."},
    "max_runtime_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_RUNTIME_SECONDS, "default": 86400},
}


FARGATE_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})
#: Fargate's task sizes (AWS "Task CPU and memory"): cpu units → the memory sizes (MiB) each allows.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048), 512: tuple(range(1024, 4097, 1024)), 1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)), 4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)), 16384: tuple(range(32768, 122881, 8192)),
}


def on_fargate(values: dict[str, Any]) -> bool:
    """Whether a job's tasks run on Fargate (its launch type, or a strategy of Fargate providers only)."""
    strategy = values.get("capacity_provider_strategy")
    if strategy:
        return all(item.get("capacityProvider") in FARGATE_PROVIDERS for item in strategy if isinstance(item, dict))
    return (values.get("launch_type") or "FARGATE") in FARGATE_PROVIDERS


def _sizes(memory: tuple[int, ...]) -> str:
    return ", ".join(str(m) for m in memory) if len(memory) <= 4 else f"{memory[0]} to {memory[-1]} in steps of " \
        f"{memory[1] - memory[0]}"


def check_job_variables(values: dict[str, Any], explicit: dict[str, Any]) -> None:
    """ECS's rules: a Fargate task's cpu/memory pair is one Fargate offers; a public IP only on Fargate."""
    fargate, cpu, memory = on_fargate(values), values.get("cpu"), values.get("memory")
    if fargate and isinstance(cpu, int) and isinstance(memory, int) and not values.get("task_definition_arn"):
        if cpu not in FARGATE_SIZES:
            raise InvalidInput(f"job_variables.cpu: Fargate takes {', '.join(map(str, FARGATE_SIZES))} CPU units, "
                               f"not {cpu}")
        if memory not in FARGATE_SIZES[cpu]:
            raise InvalidInput(f"job_variables.memory: with cpu {cpu}, Fargate takes {_sizes(FARGATE_SIZES[cpu])} "
                               f"MiB, not {memory}")
    if not fargate and explicit.get("assign_public_ip") is True:
        raise InvalidInput("job_variables.assign_public_ip: ECS gives public IPs to Fargate tasks only; on EC2 the "
                           "subnet decides (remove the variable, or set it false)")
