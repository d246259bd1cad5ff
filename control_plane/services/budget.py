"""Time budgets for pure-Python work a tenant can make the server do (schedule occurrences).

``within(seconds, what)`` runs its block with a per-thread trace hook that looks at the clock on
every 128th Python function call and raises :class:`BudgetExceeded` once the budget is spent. The
hook sees only calls (no line events) and chains to a tracer already installed (a debugger or a
coverage tool), so it costs little and breaks nothing. It cannot stop one long C call; the
callers bound those by their inputs (see ``schedules.validate_schedule``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pushpool.control_plane.errors import InvalidInput

_CHECK_EVERY = 128


class BudgetExceeded(InvalidInput):
    """Computing something a tenant supplied took longer than its budget; the message names it."""


@contextmanager
def within(seconds: float, what: str) -> Iterator[None]:
    """Run the block; raise :class:`BudgetExceeded` naming ``what`` if it takes longer than ``seconds``."""
    deadline = time.monotonic() + seconds
    previous = sys.gettrace()
    calls = 0

    def hook(frame: Any, event: str, arg: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise BudgetExceeded(f"{what}: computing its occurrences takes longer than {seconds:g} s; "
                                 "use a simpler rule")
        return previous(frame, event, arg) if previous is not None else None

    sys.settrace(hook)
    try:
        yield
    finally:
        sys.settrace(previous)
