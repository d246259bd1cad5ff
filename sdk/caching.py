"""Task caching: cache policies (which calls count as the same) and where cached results are kept.

``@task(cache_policy=INPUTS)`` reuses the result of an earlier call with equal arguments;
``INPUTS + TASK_SOURCE`` also requires the same code; ``cache_key_fn(context, parameters)`` lets the
task say its key itself. ``cache_expiration`` bounds how old a reused result may be.

Cached results are kept where :mod:`pushpool.result_stores` says (the process's memory by default).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import pickle
from collections.abc import Callable
from typing import Any


def stable_hash(*values: Any) -> str | None:
    """A hex digest of ``values`` that is the same in every process; ``None`` when they cannot be hashed."""
    try:
        text = json.dumps(values, sort_keys=True, default=_json_fallback)
    except (TypeError, ValueError, RecursionError):
        try:
            text = pickle.dumps(values, protocol=4).hex()
        except Exception:
            return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _json_fallback(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # pydantic models
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


class CachePolicy:
    """Decides a task run's cache key; ``None`` means "do not cache this call"."""

    def key(self, task: Any, parameters: dict[str, Any], context: Any) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return CompoundPolicy(self, other)


class CompoundPolicy(CachePolicy):
    def __init__(self, *policies: CachePolicy) -> None:
        self.policies = policies

    def key(self, task: Any, parameters: dict[str, Any], context: Any) -> str | None:
        parts = [p.key(task, parameters, context) for p in self.policies]
        return None if any(part is None for part in parts) else stable_hash(*parts)


class Inputs(CachePolicy):
    """The same task called with equal arguments."""

    def key(self, task: Any, parameters: dict[str, Any], context: Any) -> str | None:
        return stable_hash(task.task_key, parameters)


class TaskSource(CachePolicy):
    """The same code of the task's function."""

    def key(self, task: Any, parameters: dict[str, Any], context: Any) -> str | None:
        try:
            source = inspect.getsource(task.fn)
        except (OSError, TypeError):
            source = task.fn.__code__.co_code.hex()
        return stable_hash(task.task_key, source)


class NoCache(CachePolicy):
    def key(self, task: Any, parameters: dict[str, Any], context: Any) -> str | None:
        return None


class KeyFunction(CachePolicy):
    """``cache_key_fn(context, parameters)`` as a policy."""

    def __init__(self, fn: Callable[[Any, dict[str, Any]], str | None]) -> None:
        self.fn = fn

    def key(self, task: Any, parameters: dict[str, Any], context: Any) -> str | None:
        custom = self.fn(context, parameters)
        return None if custom is None else stable_hash(task.task_key, str(custom))


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
NO_CACHE = NoCache()
