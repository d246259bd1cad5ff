"""Futures of submitted task runs, the thread-pool task runner, and what ``.map`` and futures in arguments mean.

``task.submit(...)`` hands the task run to the flow's task runner (a thread pool) and returns a
:class:`TaskRunFuture` at once; passing a future to another task makes that task wait for it and
receive its result; ``task.map(...)`` submits one task run per element of its iterable arguments,
with :func:`unmapped` values passed whole to each.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Iterable
from typing import Any

#: Containers searched for futures in a task's arguments, this deep at most (a cycle ends there too).
MAX_RESOLVE_DEPTH = 8


class TaskRunFuture:
    """A task run in progress: ``result()`` waits and returns its value (or raises its error)."""

    def __init__(self, future: concurrent.futures.Future, record: dict[str, Any]) -> None:
        self._future = future
        self._record = record

    @property
    def task_run_id(self) -> str:
        return self._record["id"]

    @property
    def state(self) -> str:
        """The task run's state type now: PENDING, RUNNING, COMPLETED or FAILED."""
        return self._record["state_type"]

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the task run is final (or ``timeout`` seconds pass)."""
        concurrent.futures.wait([self._future], timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        try:
            return self._future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"task run {self._record['name']} is not finished after {timeout}s") from None
        except Exception as exc:
            if raise_on_failure:
                raise
            return exc

    def __repr__(self) -> str:
        return f"TaskRunFuture({self._record['name']!r}, {self.state})"


class unmapped:  # noqa: N801 - named as Prefect users write it
    """Wrap a value passed to ``task.map`` so that every mapped run gets it whole."""

    def __init__(self, value: Any) -> None:
        self.value = value


def resolve_futures(value: Any, depth: int = 0) -> Any:
    """``value`` with every future in it (also inside lists, tuples, sets and dict values) replaced by its result."""
    if isinstance(value, TaskRunFuture):
        return value.result()
    if depth >= MAX_RESOLVE_DEPTH:
        return value
    if isinstance(value, list):
        return [resolve_futures(v, depth + 1) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(resolve_futures(v, depth + 1) for v in value)
    if isinstance(value, set | frozenset):
        return type(value)(resolve_futures(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: resolve_futures(v, depth + 1) for k, v in value.items()}
    return value


def _mapped(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | dict | unmapped | TaskRunFuture)


def map_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The arguments of each mapped run: iterables are zipped (equal lengths), other values repeated."""
    args_lists = [list(a) if _mapped(a) else a for a in args]
    kwargs_lists = {k: list(v) if _mapped(v) else v for k, v in kwargs.items()}
    lengths = {len(v) for v in [*args_lists, *kwargs_lists.values()] if isinstance(v, list)}
    if not lengths:
        raise ValueError("map: no iterable argument to map over (wrap values every run gets in unmapped())")
    if len(lengths) > 1:
        raise ValueError(f"map: the iterable arguments have different lengths ({sorted(lengths)})")
    count = lengths.pop()

    def pick(value: Any, i: int) -> Any:
        if isinstance(value, list):
            return value[i]
        return value.value if isinstance(value, unmapped) else value

    return [(tuple(pick(a, i) for a in args_lists), {k: pick(v, i) for k, v in kwargs_lists.items()})
            for i in range(count)]


class ThreadPoolTaskRunner:
    """Runs submitted task runs on up to ``max_workers`` threads of this process (the flow's concurrency)."""

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("ThreadPoolTaskRunner: max_workers must be at least 1")
        self.max_workers = max_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(self.max_workers,
                                                                       thread_name_prefix="pushpool-task")
        context = contextvars.copy_context()  # the flow's context (its run, recorder) goes with the task
        return self._executor.submit(context.run, fn, *args)

    def shutdown(self, wait: bool = True) -> None:
        """Wait for every submitted task run (a flow ends when its tasks have); ``wait=False``: drop those not
        started yet and leave the running ones (the flow was interrupted)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=not wait)

    def duplicate(self) -> ThreadPoolTaskRunner:
        """A fresh runner with the same settings (one per flow run)."""
        return ThreadPoolTaskRunner(self.max_workers)
