"""Task caching: cache policies (which calls count as the same) and where cached results are kept.

``@task(cache_policy=INPUTS)`` reuses the result of an earlier call with equal arguments;
``INPUTS + TASK_SOURCE`` also requires the same code; ``cache_key_fn(context, parameters)`` lets the
task say its key itself. ``cache_expiration`` bounds how old a reused result may be.

Results are kept in the process (the default: calls within one flow run share them), in an S3
prefix (``s3://bucket/prefix``: shared by runs on any cloud that can reach it) or in a directory
named by ``result_storage=`` / ``PUSHPOOL_RESULT_STORAGE`` (the same machine for ``local:push``, a
mounted volume in a container). Values are stored with :mod:`pickle`: point ``result_storage`` only
at a place your own runs write.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_STORAGE_ENV = "PUSHPOOL_RESULT_STORAGE"


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


def _fresh(expires_at: float | None) -> bool:
    return expires_at is None or expires_at >= time.time()


def _pack(value: Any, expires_at: float | None) -> bytes:
    return pickle.dumps((expires_at, value), protocol=4)


def _unpack(data: bytes) -> tuple[bool, Any]:
    """A stored entry: ``(True, value)``, or a miss when it has expired, is damaged or from an incompatible version."""
    try:
        expires_at, value = pickle.loads(data)  # noqa: S301 - the user's own storage
    except Exception:
        return False, None
    return (True, value) if _fresh(expires_at) else (False, None)


class MemoryResults:
    """Cached results of this process."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float | None, Any]] = {}
        self._lock = threading.Lock()

    def read(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            found = self._items.get(key)
        if found is None or not _fresh(found[0]):
            return False, None
        return True, found[1]

    def write(self, key: str, value: Any, expires_at: float | None) -> None:
        with self._lock:
            self._items[key] = (expires_at, value)


class LocalResults:
    """Cached results as files in a directory (written atomically: a reader never sees half a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, key: str) -> tuple[bool, Any]:
        try:
            return _unpack((self.path / f"{key}.pickle").read_bytes())
        except FileNotFoundError:
            return False, None

    def write(self, key: str, value: Any, expires_at: float | None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        data = _pack(value, expires_at)
        fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, self.path / f"{key}.pickle")


class S3Results:
    """Cached results as objects under ``s3://bucket/prefix/`` (boto3, imported when first used; credentials,
    region and endpoint from the run's environment as boto3 finds them)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            import boto3
        except ImportError:
            raise ValueError("result_storage: s3:// needs boto3 where the flow runs: add pushpool[aws] (or boto3) "
                             "to the image's requirements") from None

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}.pickle" if self.prefix else f"{key}.pickle"

    def read(self, key: str) -> tuple[bool, Any]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return False, None
        return _unpack(body)

    def write(self, key: str, value: Any, expires_at: float | None) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=_pack(value, expires_at))


_MEMORY = MemoryResults()


@functools.lru_cache(maxsize=32)
def _s3_results(bucket: str, prefix: str) -> S3Results:
    """One store (one boto3 client, which is thread-safe and slow to make) per place, not one per task run."""
    return S3Results(bucket, prefix)


def result_store(location: str | None) -> MemoryResults | LocalResults | S3Results:
    """The store for ``location``: ``s3://bucket/prefix``, a directory (or ``file://`` URL), or ``None`` for this
    process's memory."""
    location = location or os.environ.get(RESULT_STORAGE_ENV) or None
    if location is None:
        return _MEMORY
    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"result_storage: {location!r} names no bucket; write s3://BUCKET/PREFIX")
        return _s3_results(bucket, prefix)
    if "://" in location and not location.startswith("file://"):
        scheme = location.split("://", 1)[0]
        raise ValueError(f"result_storage: {scheme}:// is not supported yet; use s3://BUCKET/PREFIX or a directory "
                         "(a local path or a mounted volume)")
    return LocalResults(Path(location.removeprefix("file://")).expanduser())


#: The largest return value the control plane keeps itself (as JSON); the API refuses larger ones.
MAX_INLINE_RESULT_BYTES = 60 * 1024


def persisted_result(value: Any, *, location: str | None, key: str) -> dict[str, Any]:
    """What the control plane keeps of a flow's return value: the value itself when it is small JSON, else
    where it was written (``result_storage``), else why it was not kept."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = None
    if text is not None and len(text) <= MAX_INLINE_RESULT_BYTES:
        return {"value": value}
    location = location or os.environ.get(RESULT_STORAGE_ENV)
    why = "is not JSON" if text is None else f"is larger than {MAX_INLINE_RESULT_BYTES // 1024} KiB as JSON"
    if not location:
        return {"unpersisted": f"the {type(value).__name__} returned {why}; set result_storage to keep it"}
    result_store(location).write(key, value, None)
    return {"storage": location, "key": key}
