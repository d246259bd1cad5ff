"""The image tests share one layer cache (the runtime layer is the same for all of them); a test that
needs a cold build points PUSHPOOL_LAYER_CACHE elsewhere."""

from __future__ import annotations

import pytest

from pushpool.images.registry import Registry


@pytest.fixture(scope="session")
def shared_layer_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("layer-cache")


@pytest.fixture(autouse=True)
def layer_cache(shared_layer_cache, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_LAYER_CACHE", str(shared_layer_cache))
    return shared_layer_cache


@pytest.fixture
def registry(oci_registries):
    """A client of the open test registry."""
    registry = Registry(oci_registries["open"])
    yield registry
    registry.close()
