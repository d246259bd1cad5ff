"""The ``@flow`` decorator: a function plus the metadata pushpool needs to run it.

The decorated function still runs when called directly, with its own task runner (a thread
pool, ``task_runner=ThreadPoolTaskRunner(max_workers=N)``) for the tasks it submits; every
submitted task has finished when the flow returns. Its parameter schema is derived from its
signature with pydantic. ``retries``/``retry_delay_seconds`` are applied by the runner. A run's
prints (and everything else on stdout and stderr) go to its infrastructure's log, which
``pushpool flow-run logs`` shows.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from pushpool.context import FlowRunContext, current_flow_run, flow_run_context
from pushpool.control_plane.errors import PushpoolError
from pushpool.futures import ThreadPoolTaskRunner
from pushpool.run_logging import enable_log_prints

if TYPE_CHECKING:
    from pushpool.deployments import RunnerDeployment
    from pushpool.images import DockerImage


class Flow:
    def __init__(self, fn: Callable[..., Any], name: str | None = None, description: str | None = None,
                 log_prints: bool = False, retries: int = 0, retry_delay_seconds: float = 0,
                 task_runner: ThreadPoolTaskRunner | None = None, result_storage: str | None = None,
                 persist_result: bool = False, timeout_seconds: float | None = None,
                 on_completion: list[Callable[..., Any]] | None = None,
                 on_failure: list[Callable[..., Any]] | None = None,
                 on_cancellation: list[Callable[..., Any]] | None = None) -> None:
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise ValueError("flow: timeout_seconds must be positive")
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.description = description or inspect.getdoc(fn)
        self.log_prints = log_prints
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.task_runner = task_runner or ThreadPoolTaskRunner()
        self.result_storage = result_storage
        #: Keep the return value of each run (``flow-run inspect`` shows it): small JSON in the control plane,
        #: anything else in ``result_storage``.
        self.persist_result = persist_result
        #: In a deployment's run (see :mod:`pushpool.run_control`): past it the run ends FAILED (TimedOut).
        self.timeout_seconds = timeout_seconds
        #: ``hook(flow, flow_run, state)`` when a deployment's run of this flow ends so.
        self.on_completion = list(on_completion or [])
        self.on_failure = list(on_failure or [])
        self.on_cancellation = list(on_cancellation or [])
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current_flow_run() is not None:  # called inside another flow: part of that run
            return self.fn(*args, **kwargs)
        if inspect.iscoroutinefunction(self.fn):
            return self._call_async(*args, **kwargs)
        with self.run_context(FlowRunContext()):
            return self.fn(*args, **kwargs)

    async def _call_async(self, *args: Any, **kwargs: Any) -> Any:
        with self.run_context(FlowRunContext()):
            return await self.fn(*args, **kwargs)

    @contextmanager
    def run_context(self, context: FlowRunContext) -> Iterator[FlowRunContext]:
        """Run this flow's body inside ``context`` (its own task runner; every submitted task waited for)."""
        context.flow_name = context.flow_name or self.name
        context.task_runner = self.task_runner.duplicate()
        context.log_prints = context.log_prints or self.log_prints
        if context.log_prints:
            enable_log_prints()
        context.result_storage = self.result_storage
        try:
            with flow_run_context(context):
                yield context
        except BaseException:
            context.task_runner.shutdown(wait=False)  # interrupted (an error, a timeout, a stop): do not wait
            raise
        context.task_runner.shutdown()

    def to_deployment(self, name: str, **options: Any) -> RunnerDeployment:
        """Describe a deployment of this flow (see :func:`sdk.deployments.to_deployment`)."""
        from pushpool.deployments import to_deployment

        return to_deployment(self, name, **options)

    def deploy(self, name: str, work_pool_name: str, work_queue_name: str | None = None,
               image: str | DockerImage | None = None, build: bool = True, push: bool = True,
               cron: str | None = None, interval: float | timedelta | None = None, rrule: str | None = None,
               schedules: list[Any] | None = None, parameters: dict[str, Any] | None = None,
               job_variables: dict[str, Any] | None = None, tags: list[str] | None = None,
               description: str | None = None, version: str | None = None, concurrency_limit: int | None = None,
               collision_strategy: str | None = None, crash_retries: int | None = None, paused: bool = False,
               triggers: list[Any] | None = None, overlap: str | None = None,
               catch_up: str | None = None) -> dict[str, Any]:
        """Create or update the deployment ``<flow name>/<name>`` on ``work_pool_name``; returns it."""
        deployment = self.to_deployment(
            name, work_pool_name=work_pool_name, work_queue_name=work_queue_name, image=image, cron=cron,
            interval=interval, rrule=rrule, schedules=schedules, parameters=parameters,
            job_variables=job_variables, tags=tags, description=description, version=version,
            concurrency_limit=concurrency_limit, collision_strategy=collision_strategy, crash_retries=crash_retries,
            paused=paused, triggers=triggers, overlap=overlap, catch_up=catch_up,
        )
        return deployment.apply(build=build, push=push)

    def parameter_schema(self) -> dict[str, Any]:
        """A JSON schema of the function's parameters (from its signature and type hints)."""
        schema = parameters_model(self.fn).model_json_schema()
        schema.pop("title", None)
        return schema


def parameters_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters: a field per parameter with its annotation and default;
    extra names are refused unless ``fn`` takes ``**kwargs``."""
    fields: dict[str, Any] = {}
    extra = "forbid"
    try:  # string annotations (``from __future__ import annotations``) resolved in the flow's own module
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(fn)
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            annotation = Any  # none, or one that does not resolve: passed on as given
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra=extra, arbitrary_types_allowed=True)  # type: ignore[typeddict-item]
    return create_model(f"{getattr(fn, '__name__', 'flow')}_parameters", __config__=config, **fields)


class ParameterError(PushpoolError):
    """A run's parameter does not convert to the type the flow declares; the message names it."""


def typed_parameters(fn: Callable[..., Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` (JSON values) converted to ``fn``'s annotated types — dates, datetimes, ``Decimal``,
    enums, pydantic models, dataclasses, ``list[int]`` … — as pydantic validates them. Only the names
    given are passed on, so the function's own defaults still apply."""
    try:
        validated = parameters_model(fn).model_validate(parameters)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        raise ParameterError(f"parameters: {problems}") from None
    extras = validated.model_extra or {}
    return {name: extras[name] if name in extras else getattr(validated, name) for name in parameters}


def flow(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         log_prints: bool = False, retries: int = 0, retry_delay_seconds: float = 0,
         task_runner: ThreadPoolTaskRunner | None = None, result_storage: str | None = None,
         persist_result: bool = False, timeout_seconds: float | None = None,
         on_completion: list[Callable[..., Any]] | None = None, on_failure: list[Callable[..., Any]] | None = None,
         on_cancellation: list[Callable[..., Any]] | None = None) -> Any:
    """Mark a function as a flow; usable as ``@flow`` or ``@flow(name=..., task_runner=...)``."""
    def decorate(f: Callable[..., Any]) -> Flow:
        return Flow(f, name=name, description=description, log_prints=log_prints, retries=retries,
                    retry_delay_seconds=retry_delay_seconds, task_runner=task_runner, result_storage=result_storage,
                    persist_result=persist_result, timeout_seconds=timeout_seconds, on_completion=on_completion,
                    on_failure=on_failure, on_cancellation=on_cancellation)
    return decorate(fn) if fn is not None else decorate
