"""Result storage in buckets — S3 (moto), Google Cloud Storage and Azure Blob Storage (the fakes in
``tests/fakes/object_storage.py``) — through each cloud's official client: one behaviour, every store."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from pushpool.result_stores import _object_store, persisted_result, result_store
from tests.fakes.object_storage import FakeBlobService, FakeGcs
from tests.sdk.test_tasks import cached_pipeline, run_flow


@pytest.fixture(autouse=True)
def fresh_clients():
    _object_store.cache_clear()  # each test's fake listens on a port of its own
    yield
    _object_store.cache_clear()


@pytest.fixture
def gcs(monkeypatch):
    fake = FakeGcs(buckets=("results",)).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)
    yield fake
    fake.stop()


@pytest.fixture
def blobs(monkeypatch):
    fake = FakeBlobService(containers=("results",)).start()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", fake.connection_string())
    yield fake
    fake.stop()


def stored_objects(scheme: str, fake) -> dict[str, bytes]:
    if scheme == "s3":
        s3 = fake.client("s3")
        return {o["Key"]: s3.get_object(Bucket="results", Key=o["Key"])["Body"].read()
                for o in s3.list_objects_v2(Bucket="results")["Contents"]}
    return fake.objects["results"] if scheme == "gs" else fake.blobs["results"]


@pytest.mark.parametrize("scheme", ["s3", "gs", "az"])
def test_task_caching_and_flow_results_go_through_the_bucket(scheme, request):
    fake = request.getfixturevalue({"s3": "aws", "gs": "gcs", "az": "blobs"}[scheme])
    if scheme == "s3":
        fake.client("s3").create_bucket(Bucket="results",
                                        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    calls: list[int] = []
    pipeline = cached_pipeline(f"{scheme}://results/cache", calls, cache_expiration=timedelta(hours=1))
    first, _ = run_flow(pipeline, 3)
    _object_store.cache_clear()  # another run, maybe on another machine: a new client reads what the first wrote
    second, recorder = run_flow(pipeline, 3)
    assert first == second == 30 and calls == [3] and recorder.final()["expensive-0"]["cache_hit"]

    kept = persisted_result(b"\x00" * 70_000, location=f"{scheme}://results/flows", key="flow-run-1")
    assert kept == {"storage": f"{scheme}://results/flows", "key": "flow-run-1"}
    stored = stored_objects(scheme, fake)
    assert sorted(name.split("/")[0] for name in stored) == ["cache", "flows"]
    assert pickle.loads(stored["flows/flow-run-1.pickle"])[1] == b"\x00" * 70_000  # noqa: S301 - ours
    assert result_store(f"{scheme}://results/flows").read("flow-run-1") == (True, b"\x00" * 70_000)
    assert result_store(f"{scheme}://results/flows").read("no-such-key") == (False, None)


def test_gcs_checksums_are_sent_and_checked(gcs):
    from google.cloud.storage.exceptions import DataCorruption

    store = result_store("gs://results/p")
    store.write("k", {"a": 1}, None)
    assert "crc32c" in gcs.uploads[-1]  # the fake refuses an upload whose checksum does not match its data
    gcs.corrupt_next_download = True
    with pytest.raises(DataCorruption):
        store.read("k")
    assert store.read("k") == (True, {"a": 1})
    gcs.objects["results"]["p/k.pickle"] = b"not a pickle"  # damaged at rest: the entry reads as a miss
    assert store.read("k") == (False, None)


def test_a_missing_bucket_or_container_is_an_error_naming_it(gcs, blobs):
    from azure.core.exceptions import ResourceNotFoundError
    from google.api_core.exceptions import NotFound

    with pytest.raises(NotFound, match="bucket does not exist"):
        result_store("gs://nope/p").write("k", 1, None)
    with pytest.raises(ResourceNotFoundError, match="ContainerNotFound"):
        result_store("az://nope/p").write("k", 1, None)


def test_a_wrong_azure_key_is_refused(blobs, monkeypatch):
    wrong = blobs.connection_string().replace("AccountKey=", "AccountKey=x" + "A" * 3, 1)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    with pytest.raises((ClientAuthenticationError, HttpResponseError), match="AuthenticationFailed"):
        result_store("az://results/p").write("k", 1, None)
    assert blobs.blobs["results"] == {}


def test_az_without_an_account_says_which_variables_name_one(monkeypatch):
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="set AZURE_STORAGE_ACCOUNT_NAME"):
        result_store("az://results/p")
    with pytest.raises(ValueError, match="names no container; write az://CONTAINER/PREFIX"):
        result_store("az:///p")
