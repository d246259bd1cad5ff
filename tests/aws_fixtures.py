"""moto on 127.0.0.1 (one server per session, started only when a test asks for it; reset for every test).

Registered as fixtures by tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.fakes.aws import REGION, Moto, start_moto


@pytest.fixture(scope="session")
def moto_server():
    moto, server = start_moto()
    yield moto
    server.stop()


@pytest.fixture
def aws(moto_server: Moto, monkeypatch) -> Moto:
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    moto_server.create_ecs_service_role()
    moto_server.client("ecs").create_cluster(clusterName="flows", capacityProviders=["FARGATE", "FARGATE_SPOT"])
    return moto_server
