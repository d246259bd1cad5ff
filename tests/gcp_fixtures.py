"""The fake Cloud Run API on 127.0.0.1, one per test, and a real service-account key whose token
endpoint is that fake (so google-auth signs and exchanges a JWT as it would against Google).

Registered as fixtures by tests/conftest.py."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

PROJECT = "pushpool-test"
REGION = "europe-west1"


@functools.cache
def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_info(token_uri: str) -> dict[str, str]:
    pem = _private_key_pem()
    return {"type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": pem,
            "client_email": f"pushpool@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": token_uri}


@pytest.fixture
def cloud_run_api(monkeypatch) -> Any:
    pytest.importorskip("google.cloud.run_v2", reason="the 'gcp' extra is not installed")
    from tests.fakes.cloud_run_api import FakeCloudRunApi

    api = FakeCloudRunApi().start()
    monkeypatch.setenv("PUSHPOOL_GCP_ENDPOINT", api.url)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    info = service_account_info(f"{api.url}/token")
    api.trust(info)
    api.key = json.dumps(info)
    yield api
    api.stop()


@pytest.fixture
def gcp_api(monkeypatch, tmp_path) -> Any:
    """The Cloud Run fake plus Service Usage, IAM, Resource Manager and Artifact Registry; the user's login
    (application default credentials) is a key of an owner account the fake trusts."""
    pytest.importorskip("googleapiclient", reason="the 'gcp' extra is not installed")
    from tests.fakes.gcp_api import FakeGcpApi

    api = FakeGcpApi().start()
    owner = {**service_account_info(f"{api.url}/token"), "client_email": f"owner@{PROJECT}.iam.gserviceaccount.com"}
    api.trust(owner)
    (tmp_path / "adc.json").write_text(json.dumps(owner))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    monkeypatch.setenv("PUSHPOOL_GCP_ENDPOINT", api.url)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    yield api
    api.stop()
