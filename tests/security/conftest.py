"""Fixtures of the security suites."""

from __future__ import annotations

import pytest

from pushpool.control_plane.services.dispatcher import Dispatcher


@pytest.fixture
def dispatch(ctx):
    """One dispatcher pass over the ``ctx`` fixture's store (the recording pusher takes the jobs)."""
    dispatcher = Dispatcher(ctx)
    yield dispatcher.run_once
    dispatcher.close()
