"""A control plane dying at a chosen point of dispatch, and the dispatcher that takes over after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pushpool.control_plane.clock import FakeClock
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.dispatcher import Dispatcher


def die_after_first_submit(submit: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pusher's ``submit``: the first call really submits, then the control plane dies
    before it can record the infrastructure id; later calls behave normally."""
    died: list[bool] = []

    def wrapper(*args: Any) -> Any:
        submission = submit(*args)
        if not died:
            died.append(True)
            raise SystemExit("control plane killed after submitting, before recording it")
        return submission

    return wrapper


def dispatch_crash_then_restart(ctx: ServiceContext, clock: FakeClock) -> None:
    """One dispatcher dies mid-pass; once its submission lease lapses, a fresh one takes over."""
    first = Dispatcher(ctx)
    with pytest.raises(SystemExit):
        first.run_once()
    first.close()
    clock.advance(ctx.settings.submission_lease_seconds + 1)
    second = Dispatcher(ctx)
    second.run_once()
    second.close()
