"""Fixtures of the service tests: a dispatcher on the test's context, closed afterwards."""

from __future__ import annotations

import pytest

from pushpool.control_plane.services.dispatcher import Dispatcher


@pytest.fixture
def dispatcher(ctx):
    d = Dispatcher(ctx)
    yield d
    d.close()
