"""pushpool: flows, deployments, runs and automations for push work pools, and the control plane behind them.

    from pushpool import flow, task, unmapped, deploy, run_deployment, DockerImage, Cron, Interval, RRule
    from pushpool import ThreadPoolTaskRunner, exponential_backoff, get_run_logger, INPUTS, TASK_SOURCE
    from pushpool import Automation, DeploymentTrigger, EventTrigger

The package is the repository's ``sdk/`` folder; the others install under it:
``pushpool.control_plane``, ``pushpool.pushers``, ``pushpool.provisioners``, ``pushpool.infra``
(see ``[tool.setuptools]`` in pyproject.toml). The public names are imported on first use, so
``import pushpool.control_plane`` (the Lambda handler, the runner in an image) loads none of the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name → the module that defines it.
_PUBLIC = {
    "Automation": "pushpool.automations", "DeploymentTrigger": "pushpool.automations",
    "EventTrigger": "pushpool.automations", "deploy": "pushpool.deployments", "Flow": "pushpool.flows",
    "flow": "pushpool.flows", "DockerImage": "pushpool.images", "run_deployment": "pushpool.runs",
    "Cron": "pushpool.schedules", "Interval": "pushpool.schedules", "RRule": "pushpool.schedules",
    "task": "pushpool.tasks", "Task": "pushpool.tasks", "exponential_backoff": "pushpool.tasks",
    "TaskRunFuture": "pushpool.futures", "ThreadPoolTaskRunner": "pushpool.futures", "unmapped": "pushpool.futures",
    "get_run_logger": "pushpool.run_logging", "Variable": "pushpool.variables", "emit_event": "pushpool.events",
    "INPUTS": "pushpool.caching", "NO_CACHE": "pushpool.caching", "TASK_SOURCE": "pushpool.caching",
    "scheduled_time": "pushpool.context",
}

__all__ = ["INPUTS", "NO_CACHE", "TASK_SOURCE", "Automation", "Cron", "DeploymentTrigger", "DockerImage",
           "EventTrigger", "Flow", "Interval", "RRule", "Task", "TaskRunFuture", "ThreadPoolTaskRunner", "Variable",
           "__version__", "deploy", "emit_event", "exponential_backoff", "flow", "get_run_logger", "run_deployment",
           "scheduled_time", "task", "unmapped"]

if TYPE_CHECKING:
    from pushpool.automations import Automation, DeploymentTrigger, EventTrigger
    from pushpool.caching import INPUTS, NO_CACHE, TASK_SOURCE
    from pushpool.context import scheduled_time
    from pushpool.deployments import deploy
    from pushpool.events import emit_event
    from pushpool.flows import Flow, flow
    from pushpool.futures import TaskRunFuture, ThreadPoolTaskRunner, unmapped
    from pushpool.images import DockerImage
    from pushpool.run_logging import get_run_logger
    from pushpool.runs import run_deployment
    from pushpool.schedules import Cron, Interval, RRule
    from pushpool.tasks import Task, exponential_backoff, task
    from pushpool.variables import Variable


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read on first use: importlib.metadata costs ~60 ms of every cold start
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("pushpool")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0.0.0+unknown"
        globals()[name] = value
        return value
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pushpool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | {"__version__"})
