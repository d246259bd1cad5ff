"""The fake Coiled API on 127.0.0.1, one per test, with the real ``coiled`` client pointed at it.

Registered as fixtures by tests/conftest.py. Two users exist: ``TOKEN`` (workspaces ``acme`` and
``acme-research``) and ``OTHER_TOKEN`` (workspace ``globex``); ``UNSET_TOKEN``'s workspace ``fresh`` has no
cloud connected (``coiled setup`` never ran)."""

from __future__ import annotations

from typing import Any

import pytest

TOKEN = "ada-0123456789abcdef"
OTHER_TOKEN = "grace-fedcba9876543210"
UNSET_TOKEN = "new-user-0000000000000"


@pytest.fixture
def coiled_api(monkeypatch, tmp_path) -> Any:
    pytest.importorskip("coiled", reason="the 'coiled' extra is not installed")
    from tests.fakes.coiled_api import FakeCoiledApi

    api = FakeCoiledApi().start()
    api.add_user(TOKEN, "ada", ["acme", "acme-research"])
    api.add_user(OTHER_TOKEN, "grace", ["globex"])
    api.add_user(UNSET_TOKEN, "newbie", ["fresh"], cloud="")
    monkeypatch.setenv("PUSHPOOL_COILED_SERVER", api.url)
    # nothing of this machine's own Coiled set-up may be used (the client reads these through dask's config)
    monkeypatch.setenv("DASK_CONFIG", str(tmp_path / "dask-config"))
    for name in ("DASK_COILED__TOKEN", "DASK_COILED__SERVER", "DASK_COILED__WORKSPACE", "DASK_COILED__ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    yield api
    api.stop()
