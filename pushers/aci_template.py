"""The default base job template of ``azure-container-instance:push`` pools: the job variables."""

from __future__ import annotations

from typing import Any

from pushpool.pushers.base import MAX_RUNTIME_SECONDS
from pushpool.pushers.templates import block_variable

VARIABLES: dict[str, dict[str, Any]] = {
    "aci_credentials": block_variable("An azure-credentials block (tenant, client id and secret), as "
                                      "\"{{ pushpool.blocks.NAME }}\"; empty: the control plane's managed identity."),
    "subscription_id": {"type": "string", "description": "Azure subscription id (default: the block's)."},
    "resource_group_name": {"type": "string", "description": "Resource group the container groups go in."},
    "location": {"type": "string", "default": "eastus", "description": "Azure region, e.g. westeurope."},
    "image": {"type": "string", "description": "Image to run (linux/amd64); defaults to the deployment's."},
    "cpu": {"type": "number", "exclusiveMinimum": 0, "default": 1, "description": "CPU cores."},
    "memory": {"type": "number", "exclusiveMinimum": 0, "default": 1.5, "description": "Memory in GB."},
    "gpu_count": {"type": "integer", "minimum": 1, "description": "GPUs (needs gpu_sku)."},
    "gpu_sku": {"enum": ["K80", "P100", "V100"], "description": "GPU model."},
    "env": {"type": "object", "additionalProperties": {"type": "string"}},
    "image_registry": {"type": "object", "description": "{server, username, password} or {server, identity}: "
                                                        "credentials for a private registry (ACR)."},
    "identities": {"type": "array", "items": {"type": "string"},
                   "description": "User-assigned managed identity resource ids for the container group."},
    "subnet_ids": {"type": "array", "items": {"type": "string"}, "description": "Subnet resource ids (VNet)."},
    "dns_servers": {"type": "array", "items": {"type": "string"}},
    "command": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "Instead of the pushpool runner."},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Resource tags."},
    "keep_container_group": {"type": "boolean", "default": False,
                             "description": "Keep the run's container group after it ends."},
    "max_runtime_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_RUNTIME_SECONDS, "default": 86400},
}

