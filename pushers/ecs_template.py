"""The default base job template of ``ecs:push`` pools: the job variables and their meaning."""

from __future__ import annotations

from typing import Any

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
    "assign_public_ip": {"type": "boolean", "default": True},
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

