"""The default base job template of ``coiled:push`` pools, and Coiled's rules a deployment is checked against.

The variables are the ones Coiled users know from ``coiled batch run``: ``cpu`` (``4`` or ``"4-8"``),
``memory`` (``"32GB"``, ``"16GiB-32GiB"``), ``gpu``, ``arm``, ``vm_type``, ``region``, ``spot_policy``,
``container`` (an image) or ``software`` (a Coiled software environment). No cloud SDK here: this module is
imported when a deployment is saved.
"""

from __future__ import annotations

import re
from typing import Any

from pushpool.control_plane.errors import InvalidInput
from pushpool.pushers.base import MAX_RUNTIME_SECONDS
from pushpool.pushers.templates import block_variable

#: Coiled's own spellings of a size: a number and a unit (``dask.utils.parse_bytes``), optionally a range.
_SIZE = r"\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]|[kKmMgGtT]|[bB])"
MEMORY_PATTERN = rf"^{_SIZE}(\s*-\s*{_SIZE})?$"
CPU_PATTERN = r"^\d+(\s*-\s*\d+)?$"
SPOT_POLICIES = ["on-demand", "spot", "spot_with_fallback"]
#: Coiled names (software environments, workspaces): lowercase letters, digits, dashes, underscores.
COILED_NAME = r"^[a-z0-9][a-z0-9_-]{0,127}$"

VARIABLES: dict[str, dict[str, Any]] = {
    "coiled_credentials": block_variable("A coiled-credentials block (API token and workspace), as "
                                         "\"{{ pushpool.blocks.NAME }}\"; provision-infra creates it."),
    "workspace": {"type": "string", "pattern": COILED_NAME,
                  "description": "Coiled workspace to run in; empty: the credentials block's, else the token's "
                                 "default workspace."},
    "container": {"type": "string",
                  "description": "Registry image to run (linux/amd64, or arm64 with arm); defaults to the "
                                 "deployment's image. Leave empty when 'software' is set."},
    "software": {"type": "string", "pattern": COILED_NAME,
                 "description": "A Coiled software environment to run in instead of an image (e.g. one made by "
                                "package sync at deploy time)."},
    "cpu": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": CPU_PATTERN}],
            "description": "CPU cores of the VM, or a range such as \"4-8\"; Coiled picks a VM type."},
    "memory": {"type": "string", "pattern": MEMORY_PATTERN,
               "description": "Memory of the VM, e.g. \"32GB\" or a range \"16GiB-32GiB\"."},
    "gpu": {"type": "boolean", "default": False, "description": "Run on a VM with an NVIDIA GPU."},
    "arm": {"type": "boolean", "default": False, "description": "Run on an ARM (Graviton/Axion) VM."},
    "vm_type": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1,
                                                                "items": {"type": "string", "minLength": 1}}],
                "description": "VM type or types to use instead of cpu/memory, e.g. \"m6i.xlarge\"."},
    "region": {"type": "string", "description": "Cloud region; empty: the workspace's default region."},
    "spot_policy": {"enum": SPOT_POLICIES, "default": "on-demand",
                    "description": "on-demand, spot, or spot_with_fallback (spot, else on-demand)."},
    "env": {"type": "object", "additionalProperties": {"type": "string"},
            "description": "Environment of the run; sent to Coiled as secret environment (not stored by "
                           "Coiled)."},
    "command": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "Instead of the pushpool runner."},
    "labels": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "Tags of the Coiled cluster (and its VMs in your cloud)."},
    "max_runtime_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_RUNTIME_SECONDS, "default": 86400,
                            "description": "Coiled stops the job (and its VM) after this many seconds."},
}


def _is_set(value: Any) -> bool:
    return value not in (None, "", [], {})


def check_job_variables(values: dict[str, Any], explicit: dict[str, Any]) -> None:
    """Coiled's rules the schema cannot say, so a deployment hears of them when it is saved."""
    if _is_set(values.get("container")) and _is_set(values.get("software")):
        raise InvalidInput("job_variables.software: give either 'container' (an image) or 'software' (a Coiled "
                           "software environment), not both")
    if _is_set(values.get("vm_type")) and (_is_set(values.get("cpu")) or _is_set(values.get("memory"))):
        raise InvalidInput("job_variables.vm_type: Coiled takes either vm_type or cpu/memory (it picks a VM type "
                           "from cpu and memory); leave one out")
    if values.get("gpu") and values.get("arm"):
        raise InvalidInput("job_variables.gpu: Coiled has no ARM VMs with NVIDIA GPUs; set gpu or arm, not both")
    for name in ("cpu", "memory"):
        low_high = _range(values.get(name), name)
        if low_high and low_high[0] > low_high[1]:
            raise InvalidInput(f"job_variables.{name}: the range {values[name]!r} starts above where it ends")


def _range(value: Any, name: str) -> tuple[float, float] | None:
    if not isinstance(value, str) or "-" not in value:
        return None
    low, high = (part.strip() for part in value.split("-", 1))
    if name == "cpu":
        return float(low), float(high)
    return parse_size(low), parse_size(high)


_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> float:
    """Bytes of "32GB"/"16 GiB" (the units ``dask.utils.parse_bytes`` takes, which Coiled uses)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        raise InvalidInput(f"job_variables.memory: {text!r} is not a size such as \"32GB\" or \"16GiB\"")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]
