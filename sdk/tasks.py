"""The ``@task`` decorator and the engine that runs one task run: retries, timeouts, caching, its record.

Calling a task runs it now and returns its value (an async task returns a coroutine to await);
``.submit()`` runs it on the flow's task runner and returns a future; ``.map()`` submits one run
per element. Each task run has a record — name, state, attempts, cache hit, error, start and end —
handed to the flow run's recorder whenever it changes (the runner ships them to the control
plane in batches; outside a deployment's run nothing is sent).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pushpool.caching import NO_CACHE, CachePolicy, KeyFunction
from pushpool.context import FlowRunContext, TaskRunContext, current_flow_run, task_run_context
from pushpool.control_plane.models import new_id
from pushpool.futures import TaskRunFuture, ThreadPoolTaskRunner, map_arguments, resolve_futures
from pushpool.result_stores import result_store
from pushpool.run_logging import enable_log_prints
from pushpool.tag_slots import TagSlots

#: The most characters of an error message a task run's record keeps.
MAX_ERROR_CHARS = 4000
#: Numbers the task runs made outside any flow.
_OUTSIDE_FLOWS = FlowRunContext()


class TaskTimeout(TimeoutError):
    """A task run took longer than its ``timeout_seconds``."""


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """``retry_delay_seconds=exponential_backoff(10)``: 10, 20, 40, … seconds before each retry."""
    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2 ** attempt for attempt in range(retries)]
    return delays


def _delays(retries: int, retry_delay_seconds: float | list[float] | Callable[[int], list[float]]) -> list[float]:
    if callable(retry_delay_seconds):
        values = list(retry_delay_seconds(retries))
    elif isinstance(retry_delay_seconds, int | float):
        values = [float(retry_delay_seconds)] * retries
    else:
        values = [float(v) for v in retry_delay_seconds]
    if retries and not values:
        values = [0.0]
    return [values[min(i, len(values) - 1)] for i in range(retries)]


class Task:
    def __init__(self, fn: Callable[..., Any], name: str | None = None, *, retries: int = 0,
                 retry_delay_seconds: float | list[float] | Callable[[int], list[float]] = 0,
                 retry_jitter_factor: float | None = None, timeout_seconds: float | None = None,
                 tags: Iterable[str] | None = None, log_prints: bool | None = None,
                 cache_policy: CachePolicy | None = None, cache_key_fn: Callable[..., str | None] | None = None,
                 cache_expiration: timedelta | None = None, persist_result: bool | None = None,
                 result_storage: str | None = None) -> None:
        if retries < 0:
            raise ValueError("task: retries must not be negative")
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise ValueError("task: timeout_seconds must be positive")
        self.fn = fn
        self.name = name or fn.__name__
        self.task_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.timeout_seconds = timeout_seconds
        self.tags = sorted(set(tags or []))
        self.log_prints = log_prints
        self.cache_policy = KeyFunction(cache_key_fn) if cache_key_fn else (cache_policy or NO_CACHE)
        self.cache_expiration = cache_expiration
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def with_options(self, **options: Any) -> Task:
        """A copy of this task with some options changed (``name``, ``retries``, ``tags``, ...)."""
        current = {"name": self.name, "retries": self.retries, "retry_delay_seconds": self.retry_delay_seconds,
                   "retry_jitter_factor": self.retry_jitter_factor, "timeout_seconds": self.timeout_seconds,
                   "tags": self.tags, "log_prints": self.log_prints, "cache_expiration": self.cache_expiration,
                   "persist_result": self.persist_result, "result_storage": self.result_storage,
                   "cache_policy": self.cache_policy}
        return Task(self.fn, **{**current, **options})

    # ------------------------------------------------------------------ calling
    def __call__(self, *args: Any, wait_for: Iterable[TaskRunFuture] | None = None, **kwargs: Any) -> Any:
        run = TaskRun(self, args, kwargs, wait_for)
        return run.run_async() if self.is_async else run.run()

    def submit(self, *args: Any, wait_for: Iterable[TaskRunFuture] | None = None, **kwargs: Any) -> TaskRunFuture:
        run = TaskRun(self, args, kwargs, wait_for)
        target = (lambda: asyncio.run(run.run_async())) if self.is_async else run.run
        return TaskRunFuture(_task_runner().submit(target), run.record)

    def map(self, *args: Any, wait_for: Iterable[TaskRunFuture] | None = None, **kwargs: Any
            ) -> list[TaskRunFuture]:
        return [self.submit(*a, wait_for=wait_for, **k) for a, k in map_arguments(args, kwargs)]


def _task_runner() -> ThreadPoolTaskRunner:
    flow_run = current_flow_run()
    if flow_run is not None and flow_run.task_runner is not None:
        return flow_run.task_runner
    return _DEFAULT_RUNNER  # a task submitted outside any flow


_DEFAULT_RUNNER = ThreadPoolTaskRunner()


def _now() -> str:
    return datetime.now(UTC).isoformat()


class TaskRun:
    """One call of a task: resolves its inputs, consults the cache, runs its attempts, keeps its record."""

    def __init__(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any],
                 wait_for: Iterable[TaskRunFuture] | None) -> None:
        self.task, self.args, self.kwargs = task, args, kwargs
        self.wait_for = list(wait_for or [])
        self.flow_run = current_flow_run()
        flow_run_id = self.flow_run.flow_run_id if self.flow_run else None
        self.record: dict[str, Any] = {
            "id": new_id(), "flow_run_id": flow_run_id,
            "name": (self.flow_run or _OUTSIDE_FLOWS).next_task_run_name(task.name),
            "task_key": task.task_key, "state_type": "PENDING", "state_name": "Pending", "attempts": 0,
            "cache_hit": False, "error": None, "tags": task.tags, "start_time": None, "end_time": None,
        }

    # ------------------------------------------------------------------ the record
    def _set(self, **changes: Any) -> None:
        self.record.update(changes)
        if self.flow_run is not None:
            self.flow_run.recorder.record(dict(self.record))

    def _fail(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        name = "TimedOut" if isinstance(exc, TaskTimeout) else "Failed"
        self._set(state_type="FAILED", state_name=name, error=message, end_time=_now())

    # ------------------------------------------------------------------ the steps
    def _prepare(self) -> tuple[inspect.BoundArguments, str | None, Any, TaskRunContext]:
        """The bound arguments (futures resolved, defaults applied), the cache key, the result store and the
        task run's context."""
        for future in self.wait_for:
            future.wait()
        args, kwargs = resolve_futures(self.args), resolve_futures(self.kwargs)
        bound = self.task._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        context = TaskRunContext(self.record["id"], self.task.name, self._log_prints())
        key = self.task.cache_policy.key(self.task, dict(bound.arguments), context)
        location = self.task.result_storage or (self.flow_run.result_storage if self.flow_run else None)
        return bound, key, result_store(location) if key else None, context

    def _log_prints(self) -> bool:
        wanted = self.task.log_prints if self.task.log_prints is not None else bool(
            self.flow_run and self.flow_run.log_prints)
        if wanted:
            enable_log_prints()
        return wanted

    def _delay(self, attempt: int) -> float:
        delay = _delays(self.task.retries, self.task.retry_delay_seconds)[attempt - 1]
        if self.task.retry_jitter_factor:
            delay *= 1 + random.uniform(-self.task.retry_jitter_factor, self.task.retry_jitter_factor)  # noqa: S311
        return max(0.0, delay)

    def _expires(self) -> float | None:
        return time.time() + self.task.cache_expiration.total_seconds() if self.task.cache_expiration else None

    def _cached(self, store: Any, key: str | None) -> tuple[bool, Any]:
        if store is None:
            return False, None
        found, value = store.read(key)
        if found:
            now = _now()
            self._set(state_type="COMPLETED", state_name="Cached", cache_hit=True, start_time=now, end_time=now)
        return found, value

    def _begin(self, attempt: int) -> None:
        self._set(state_type="RUNNING", state_name="Running" if attempt == 1 else "Retrying", attempts=attempt,
                  start_time=self.record["start_time"] or _now())

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` (recorded as failed) when none is left."""
        if attempt > self.task.retries:
            self._fail(exc)
            return None
        self._set(state_type="SCHEDULED", state_name="AwaitingRetry",
                  error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        return self._delay(attempt)

    def _succeeded(self, store: Any, key: str | None, value: Any) -> Any:
        if store is not None:
            store.write(key, value, self._expires())
        self._set(state_type="COMPLETED", state_name="Completed", error=None, end_time=_now())
        return value

    def _start(self) -> tuple[tuple[Any, ...], dict[str, Any], str | None, Any, TaskRunContext]:
        try:
            bound, key, store, context = self._prepare()
        except BaseException as exc:
            self._fail(exc)
            raise
        return bound.args, bound.kwargs, key, store, context

    def _slots(self) -> TagSlots | None:
        """The tag concurrency slots this run must hold (inside a deployment's run, for a task with tags)."""
        if not self.task.tags or self.flow_run is None or self.flow_run.client is None:
            return None
        return TagSlots(self.flow_run.client, self.task.tags, self.record["id"],
                        lambda full: self._set(state_type="PENDING", state_name="AwaitingConcurrencySlot",
                                               error=f"waiting for a slot of {', '.join(full)}"))

    # ------------------------------------------------------------------ sync
    def run(self) -> Any:
        args, kwargs, key, store, context = self._start()
        found, value = self._cached(store, key)
        if found:
            return value
        slots = self._slots()
        if slots is None:
            return self._attempts(args, kwargs, key, store, context)
        slots.acquire()
        try:
            return self._attempts(args, kwargs, key, store, context)
        finally:
            slots.release()

    def _attempts(self, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None, store: Any,
                  context: TaskRunContext) -> Any:
        for attempt in itertools.count(1):
            self._begin(attempt)
            try:
                with task_run_context(context):
                    value = self._call_with_timeout(args, kwargs)
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise
                time.sleep(delay)
                continue
            return self._succeeded(store, key, value)
        raise AssertionError("unreachable")

    def _call_with_timeout(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.task.timeout_seconds is None:
            return self.task.fn(*args, **kwargs)
        # A thread cannot be stopped: after the timeout the task run fails and its thread is left to finish.
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = self.task.fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc

        worker = threading.Thread(target=contextvars.copy_context().run, args=(target,), daemon=True,
                                  name=f"pushpool-timeout-{self.record['name']}")
        worker.start()
        worker.join(self.task.timeout_seconds)
        if worker.is_alive():
            raise TaskTimeout(f"task run {self.record['name']} exceeded its timeout of {self.task.timeout_seconds}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    # ------------------------------------------------------------------ async
    async def run_async(self) -> Any:
        args, kwargs, key, store, context = self._start()
        found, value = self._cached(store, key)
        if found:
            return value
        slots = self._slots()
        if slots is None:
            return await self._attempts_async(args, kwargs, key, store, context)
        await asyncio.to_thread(slots.acquire)
        try:
            return await self._attempts_async(args, kwargs, key, store, context)
        finally:
            await asyncio.to_thread(slots.release)

    async def _attempts_async(self, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None, store: Any,
                              context: TaskRunContext) -> Any:
        for attempt in itertools.count(1):
            self._begin(attempt)
            try:
                with task_run_context(context):
                    value = await asyncio.wait_for(self.task.fn(*args, **kwargs), self.task.timeout_seconds)
            except Exception as exc:
                if isinstance(exc, TimeoutError) and self.task.timeout_seconds:
                    exc = TaskTimeout(f"task run {self.record['name']} exceeded its timeout of "
                                      f"{self.task.timeout_seconds}s")
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise exc from None
                await asyncio.sleep(delay)
                continue
            return self._succeeded(store, key, value)
        raise AssertionError("unreachable")


def task(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Mark a function as a task; usable as ``@task`` or ``@task(retries=3, ...)`` (options of :class:`Task`)."""
    def decorate(f: Callable[..., Any]) -> Task:
        return Task(f, **options)
    return decorate(fn) if fn is not None else decorate
