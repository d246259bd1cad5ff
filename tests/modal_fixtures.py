"""The fake Modal API on 127.0.0.1, one per test, with the real ``modal`` client pointed at it.

Registered as fixtures by tests/conftest.py. Two tokens exist: ``TOKEN`` and ``OTHER_TOKEN``."""

from __future__ import annotations

from typing import Any

import pytest

TOKEN = ("ak-pushpool-test", "as-secret-one")
OTHER_TOKEN = ("ak-pushpool-other", "as-secret-two")


@pytest.fixture
def modal_api(monkeypatch, tmp_path) -> Any:
    pytest.importorskip("modal", reason="the 'modal' extra is not installed")
    from tests.fakes.modal_api import FakeModalApi

    api = FakeModalApi().start()
    api.add_token(*TOKEN)
    api.add_token(*OTHER_TOKEN)
    monkeypatch.setenv("MODAL_SERVER_URL", api.url)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "modal.toml"))
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    yield api
    api.stop()
