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
    import pushpool.pushers.aci as aci_pusher
    from tests.fakes.azure_api import FakeArmApi, StaticCredential

    api = FakeArmApi().start()
    monkeypatch.setenv("PUSHPOOL_AZURE_ENDPOINT", api.url)
    monkeypatch.setattr(aci_pusher, "credential_for", lambda block: StaticCredential())
    yield api
    api.stop()


@pytest.fixture
def azure_api(monkeypatch) -> Any:
    """Resource Manager and Microsoft Graph for --provision-infra (and the pusher) on one fake; the user's login
    holds the fake's token, and a service principal's secret gets a token of its own from the fake standing in
    for Microsoft Entra (from the subscription's tenant only; its role assignments take time to propagate)."""
    pytest.importorskip("msgraph", reason="the 'azure' extra is not installed")
    import pushpool.provisioners.azure as azure_provisioner
    import pushpool.pushers.aci as aci_pusher
    from tests.fakes.azure_api import FakeAzureApi, FakeEntraCredential, StaticCredential

    api = FakeAzureApi().start()
    monkeypatch.setenv("PUSHPOOL_AZURE_ENDPOINT", api.url)
    monkeypatch.setenv("PUSHPOOL_GRAPH_ENDPOINT", api.url)
    monkeypatch.delenv("AZURE_TENANT_ID", raising=False)  # as after a plain 'az login'
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    monkeypatch.setattr(aci_pusher, "client_secret_credential",
                        lambda tenant, client, secret: FakeEntraCredential(api, tenant, client, secret))
    monkeypatch.setattr(azure_provisioner, "user_credential", StaticCredential)
    yield api
    api.stop()
