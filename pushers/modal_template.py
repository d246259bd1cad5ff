"""The default base job template of ``modal:push`` pools: the job variables and their meaning."""

from __future__ import annotations

from typing import Any

from pushpool.pushers.base import MAX_RUNTIME_SECONDS
from pushpool.pushers.templates import block_variable

#: Modal's own limit on a sandbox's lifetime.
MODAL_MAX_TIMEOUT_SECONDS = 24 * 3600

VARIABLES: dict[str, dict[str, Any]] = {
    "modal_credentials": block_variable("A modal-credentials block (token id and secret), as "
                                        "\"{{ pushpool.blocks.NAME }}\"; provision-infra creates it."),
    "app_name": {"type": "string", "default": "pushpool", "pattern": r"^[A-Za-z0-9._-]{1,64}$",
                 "description": "The Modal app the run's sandboxes belong to (created when missing)."},
    "environment": {"type": "string", "description": "Modal environment; empty: the workspace's default."},
    "image": {"type": "string", "description": "Registry image to run (linux/amd64); defaults to the deployment's."},
    "registry_secret": {"type": "string",
                        "description": "Name of a Modal secret with REGISTRY_USERNAME and REGISTRY_PASSWORD, for a "
                                       "private image."},
    "cpu": {"type": "number", "exclusiveMinimum": 0, "description": "CPU cores to reserve (fractions allowed)."},
    "memory": {"type": "integer", "minimum": 1, "description": "Memory to reserve, in MiB."},
    "gpu": {"type": "string", "description": "GPU type and count, e.g. \"A10G\", \"H100:2\"."},
    "timeout": {"type": "integer", "minimum": 1, "maximum": MODAL_MAX_TIMEOUT_SECONDS, "default": 3600,
                "description": "Modal ends the sandbox after this many seconds."},
    "region": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
               "description": "Region or regions to run in, e.g. \"us-east\"."},
    "cloud": {"enum": ["aws", "gcp", "oci", "auto"], "description": "Cloud provider to run on."},
    "env": {"type": "object", "additionalProperties": {"type": "string"}},
    "command": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "Instead of the pushpool runner."},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Sandbox tags."},
    "max_runtime_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_RUNTIME_SECONDS, "default": 86400},
}

