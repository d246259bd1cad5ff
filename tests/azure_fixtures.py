"""The fake Azure Resource Manager on 127.0.0.1, one per test. The pusher's credential is replaced by one
that holds the fake's token: these tests do not talk to Microsoft Entra ID.

Registered as fixtures by tests/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest

SUBSCRIPTION = "00000000-0000-0000-0000-00000000abcd"
RESOURCE_GROUP = "pushpool-flows"


@pytest.fixture
def arm_api(monkeypatch) -> Any:
    pytest.importorskip("azure.mgmt.containerinstance", reason="the 'azure' extra is not installed")
    import pushers.aci
    from tests.fakes.azure_api import FakeArmApi, StaticCredential

    api = FakeArmApi().start()
    monkeypatch.setenv("PUSHPOOL_AZURE_ENDPOINT", api.url)
    monkeypatch.setattr(pushers.aci, "credential_for", lambda block: StaticCredential())
    yield api
    api.stop()
