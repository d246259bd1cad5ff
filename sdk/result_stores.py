"""Where results are kept: a flow's persisted return value and task runs' cached results.

In the process (the default for caching: calls within one flow run share them), in a directory
(the same machine for ``local:push``, a mounted volume in a container), or as objects in a bucket
shared by runs on any cloud that reaches it: ``s3://bucket/prefix``, ``gs://bucket/prefix``,
``az://container/prefix``, named by ``result_storage=`` or ``PUSHPOOL_RESULT_STORAGE``. Each cloud's
client is imported when first used, with credentials from the run's environment. Values are stored
with :mod:`pickle`: point ``result_storage`` only at a place your own runs write.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

RESULT_STORAGE_ENV = "PUSHPOOL_RESULT_STORAGE"


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


class _ObjectResults:
    """Results as objects named ``prefix/key.pickle`` in a bucket; subclasses get and put the bytes, and name
    the exception their client raises for an object that is not there (a cache miss)."""

    def __init__(self, prefix: str, missing: type[Exception]) -> None:
        self.prefix, self._missing = prefix.strip("/"), missing

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}.pickle" if self.prefix else f"{key}.pickle"

    def _get(self, name: str) -> bytes:
        raise NotImplementedError

    def _put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def read(self, key: str) -> tuple[bool, Any]:
        try:
            return _unpack(self._get(self._name(key)))
        except self._missing:
            return False, None

    def write(self, key: str, value: Any, expires_at: float | None) -> None:
        self._put(self._name(key), _pack(value, expires_at))


class S3Results(_ObjectResults):
    """Results as objects under ``s3://bucket/prefix/`` (boto3, imported when first used; credentials, region
    and endpoint from the run's environment as boto3 finds them)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            import boto3
        except ImportError:
            raise ValueError("result_storage: s3:// needs boto3 where the flow runs: add pushpool[aws] (or boto3) "
                             "to the image's requirements") from None
        self.bucket = bucket
        self.client = boto3.client("s3")
        super().__init__(prefix, self.client.exceptions.NoSuchKey)

    def _get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def _put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=name, Body=data)


class GcsResults(_ObjectResults):
    """Results as objects under ``gs://bucket/prefix/`` (google-cloud-storage, imported when first used;
    credentials and project from the run's environment: Application Default Credentials, e.g. a Cloud Run
    job's service account)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            from google.api_core.exceptions import NotFound
            from google.cloud import storage
        except ImportError:
            raise ValueError("result_storage: gs:// needs google-cloud-storage where the flow runs: add "
                             "pushpool[gcp] (or google-cloud-storage) to the image's requirements") from None
        super().__init__(prefix, NotFound)
        self._bucket = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT")).bucket(bucket)

    def _get(self, name: str) -> bytes:
        return self._bucket.blob(name).download_as_bytes()

    def _put(self, name: str, data: bytes) -> None:
        self._bucket.blob(name).upload_from_string(data, content_type="application/octet-stream")


class AzureBlobResults(_ObjectResults):
    """Results as blobs under ``az://container/prefix/`` (azure-storage-blob, imported when first used). The
    account comes from the run's environment: ``AZURE_STORAGE_CONNECTION_STRING``, or
    ``AZURE_STORAGE_ACCOUNT_URL`` / ``AZURE_STORAGE_ACCOUNT_NAME`` with the run's Azure identity
    (``DefaultAzureCredential``: the container group's managed identity, or the ``AZURE_CLIENT_*`` variables)."""

    def __init__(self, container: str, prefix: str) -> None:
        try:
            from azure.core.exceptions import ResourceNotFoundError
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise ValueError("result_storage: az:// needs azure-storage-blob where the flow runs: add "
                             "pushpool[azure] (or azure-storage-blob) to the image's requirements") from None
        super().__init__(prefix, ResourceNotFoundError)
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if connection:
            service = BlobServiceClient.from_connection_string(connection)
        else:
            account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
            url = os.environ.get("AZURE_STORAGE_ACCOUNT_URL") or (
                f"https://{account}.blob.core.windows.net" if account else None)
            if not url:
                raise ValueError("result_storage: az:// needs the storage account: set AZURE_STORAGE_ACCOUNT_NAME "
                                 "(or AZURE_STORAGE_ACCOUNT_URL, or AZURE_STORAGE_CONNECTION_STRING) in the run's "
                                 "env job variable")
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(url, credential=DefaultAzureCredential())
        self._container = service.get_container_client(container)

    def _get(self, name: str) -> bytes:
        return self._container.download_blob(name).readall()

    def _put(self, name: str, data: bytes) -> None:
        self._container.upload_blob(name, data, overwrite=True)


_MEMORY = MemoryResults()
#: ``scheme://`` → the store for a bucket (container) and a prefix.
_OBJECT_STORES: dict[str, type[_ObjectResults]] = {"s3": S3Results, "gs": GcsResults, "az": AzureBlobResults}
ResultStore = MemoryResults | LocalResults | S3Results | GcsResults | AzureBlobResults


@functools.lru_cache(maxsize=32)
def _object_store(scheme: str, bucket: str, prefix: str) -> _ObjectResults:
    """One store (one client, thread-safe and slow to make) per place, not one per task run."""
    return _OBJECT_STORES[scheme](bucket, prefix)


def result_store(location: str | None) -> ResultStore:
    """The store for ``location``: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``, a
    directory (or ``file://`` URL), or ``None`` for this process's memory."""
    location = location or os.environ.get(RESULT_STORAGE_ENV) or None
    if location is None:
        return _MEMORY
    scheme, separator, rest = location.partition("://")
    if separator and scheme in _OBJECT_STORES:
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            what = "container" if scheme == "az" else "bucket"
            raise ValueError(f"result_storage: {location!r} names no {what}; write {scheme}://{what.upper()}/PREFIX")
        return _object_store(scheme, bucket, prefix.strip("/"))
    if separator and scheme != "file":
        raise ValueError(f"result_storage: {scheme}:// is not supported; use s3://, gs:// or az://BUCKET/PREFIX, or "
                         "a directory (a local path or a mounted volume)")
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
