"""The default base job template of ``cloud-run:push`` pools: the job variables and their meaning."""

from __future__ import annotations

from typing import Any

from pushpool.pushers.base import MAX_RUNTIME_SECONDS
from pushpool.pushers.templates import block_variable

#: Cloud Run's own limit on a task's timeout: 168 hours.
CLOUD_RUN_MAX_TIMEOUT_SECONDS = 168 * 3600

VARIABLES: dict[str, dict[str, Any]] = {
    "credentials": block_variable("A gcp-credentials block (service account key), as \"{{ pushpool.blocks.NAME }}\"; "
                                  "empty: the control plane's application default credentials."),
    "project": {"type": "string", "description": "Google Cloud project id (default: the credentials' project)."},
    "region": {"type": "string", "default": "us-central1", "description": "Cloud Run region."},
    "image": {"type": "string", "description": "Image to run (linux/amd64 only); defaults to the deployment's."},
    "cpu": {"type": "string", "default": "1", "description": "CPU limit, e.g. \"1\", \"2\", \"1000m\"."},
    "memory": {"type": "string", "default": "512Mi", "description": "Memory limit, e.g. \"512Mi\", \"2Gi\"."},
    "timeout": {"type": "integer", "minimum": 1, "maximum": CLOUD_RUN_MAX_TIMEOUT_SECONDS, "default": 3600,
                "description": "Seconds before Cloud Run stops the task (up to 168 h)."},
    "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 0,
                    "description": "Cloud Run's own task retries (a retried task re-runs the whole flow)."},
    "service_account_name": {"type": "string", "description": "Service account email the flow runs as."},
    "vpc_connector": {"type": "string", "description": "Serverless VPC Access connector name."},
    "env": {"type": "object", "additionalProperties": {"type": "string"}},
    "env_from_secrets": {"type": "object", "additionalProperties": {
        "type": "object", "required": ["secret"],
        "properties": {"secret": {"type": "string"}, "version": {"type": "string", "default": "latest"}}},
        "description": "Variable name → Secret Manager secret (and version)."},
    "command": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "Instead of the pushpool runner."},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Job labels."},
    "keep_job": {"type": "boolean", "default": False,
                 "description": "Keep the run's Cloud Run job after it ends (Cloud Run allows 1,000 per region)."},
    "max_runtime_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_RUNTIME_SECONDS, "default": 86400},
}

