"""What can end a flow run from outside its code, for the runner: its timeout and a stop signal; and its hooks.

``@flow(timeout_seconds=N)``: past N seconds the flow is interrupted (``FlowTimeout`` raised in its
main thread, the way a sync flow is stopped), the run ends FAILED (``TimedOut``) and the process
exits, which stops its infrastructure. A cancellation reaches the runner as SIGTERM (every pusher
stops a run that way first); the runner interrupts the flow with ``FlowCancelled``, calls the
``on_cancellation`` hooks and exits, and the control plane records CANCELLED once the
infrastructure is gone. Hooks are called as ``hook(flow, flow_run, state)``; an error in a hook
is printed and changes nothing.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any


class FlowTimeout(BaseException):
    """The flow ran past its ``timeout_seconds`` (a BaseException: the flow's own ``except Exception`` cannot
    swallow it)."""


class FlowCancelled(BaseException):
    """The run was stopped from outside (SIGTERM: a cancellation, or the runtime limit)."""


@contextlib.contextmanager
def interruptions(timeout_seconds: float | None) -> Iterator[None]:
    """While the flow runs (in the main thread): its timeout as SIGALRM, a stop as SIGTERM."""
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise FlowTimeout(f"Flow run exceeded its timeout of {timeout_seconds:g}s")

    stopped = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        # A stop often comes twice (to the process group, and forwarded by a supervisor): once is enough, and a
        # second one must not end the process while its hooks run.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = True
        raise FlowCancelled("The run was stopped (SIGTERM)")

    previous_term = signal.signal(signal.SIGTERM, on_term)
    previous_alarm = signal.signal(signal.SIGALRM, on_alarm) if timeout_seconds else None
    if timeout_seconds:
        signal.setitimer(signal.ITIMER_REAL, timeout_seconds)
    try:
        yield
    finally:
        if timeout_seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_alarm)
        if not stopped:  # after a stop, SIGTERM stays ignored until the runner has left
            signal.signal(signal.SIGTERM, previous_term)


def call_hooks(hooks: Iterable[Callable[..., Any]], flow: Any, flow_run: dict[str, Any], state: dict[str, Any]
               ) -> None:
    for hook in hooks:
        try:
            hook(flow, flow_run, state)
        except Exception:  # a hook never changes the run's outcome
            print(f"pushpool: the {getattr(hook, '__name__', 'hook')} hook failed:", file=sys.stderr)
            traceback.print_exc()
