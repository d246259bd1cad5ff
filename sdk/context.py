"""What a running flow and task know about themselves: the run context, kept in context variables.

A flow called directly (a test, a notebook) gets a local context that records nothing; the
in-container runner gives the flow a context whose ``recorder`` ships task runs (and, with
``log_prints``, prints) to the control plane. Tasks find their flow's context here, so a task
called outside any flow still runs, as a plain function with retries and caching.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pushpool.client import PushpoolClient


class TaskRunRecorder(Protocol):
    """Receives each task run's record (a dict, see :mod:`pushpool.tasks`) whenever it changes."""

    def record(self, task_run: dict[str, Any]) -> None: ...


class NullRecorder:
    """Outside a deployment's run: task runs are not reported anywhere."""

    def record(self, task_run: dict[str, Any]) -> None:
        return None


@dataclass
class FlowRunContext:
    flow_run_id: str | None = None
    flow_name: str | None = None
    recorder: TaskRunRecorder = field(default_factory=NullRecorder)
    task_runner: Any = None
    log_prints: bool = False
    #: Where results and cache entries are kept (a local path); ``None``: in memory for this process.
    result_storage: str | None = None
    #: In a deployment's run: the runner's client (its run token), for variables and events.
    client: Any = None
    #: In a deployment's run: when it was scheduled for (a backfill's run: the occurrence it processes).
    scheduled_time: datetime | None = None
    _counters: dict[str, itertools.count] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_task_run_name(self, task_name: str) -> str:
        """``add-0``, ``add-1``, …: task run names numbered per task within the flow run."""
        with self._lock:
            return f"{task_name}-{next(self._counters.setdefault(task_name, itertools.count()))}"


@dataclass
class TaskRunContext:
    task_run_id: str
    task_name: str
    log_prints: bool = False


_flow_run: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar("pushpool_flow_run", default=None)
_task_run: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar("pushpool_task_run", default=None)


def current_flow_run() -> FlowRunContext | None:
    return _flow_run.get()


def scheduled_time() -> datetime | None:
    """When the current deployment run was scheduled for — for a backfill's run, the occurrence it processes
    (e.g. "its" day); ``None`` outside a deployment's run."""
    context = current_flow_run()
    return context.scheduled_time if context is not None else None


def current_task_run() -> TaskRunContext | None:
    return _task_run.get()


@contextmanager
def _entered(variable: contextvars.ContextVar[Any], context: Any) -> Iterator[Any]:
    token = variable.set(context)
    try:
        yield context
    finally:
        variable.reset(token)


def flow_run_context(context: FlowRunContext) -> contextlib.AbstractContextManager[FlowRunContext]:
    return _entered(_flow_run, context)


def task_run_context(context: TaskRunContext) -> contextlib.AbstractContextManager[TaskRunContext]:
    return _entered(_task_run, context)


@contextmanager
def run_or_profile_client() -> Iterator[PushpoolClient]:
    """The run's own client (its run token) inside a deployment's run, else one from the active profile."""
    flow_run = current_flow_run()
    if flow_run is not None and flow_run.client is not None:
        yield flow_run.client
        return
    with PushpoolClient() as client:
        yield client
