"""The runner's interruptions: a timeout and a stop reach the flow's main thread; a second stop is ignored."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pushpool.run_control import FlowCancelled, FlowTimeout, call_hooks, interruptions


def test_a_timeout_interrupts_the_flow_and_is_cleared_after():
    started = time.monotonic()
    with pytest.raises(FlowTimeout, match="exceeded its timeout of 0.2s"), interruptions(0.2):
        time.sleep(5)
    assert time.monotonic() - started < 2
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_stop_interrupts_once_and_a_second_one_cannot_kill_the_hooks():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(FlowCancelled), interruptions(None):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)  # forwarded again by a supervisor: ignored, the process lives
        time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_without_a_stop_the_handlers_are_put_back():
    previous = signal.getsignal(signal.SIGTERM)
    with interruptions(1):
        pass
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_hook_that_raises_changes_nothing(capsys):
    seen = []
    call_hooks([lambda f, r, s: 1 / 0, lambda f, r, s: seen.append(s["type"])], None, {}, {"type": "FAILED"})
    assert seen == ["FAILED"] and "hook failed" in capsys.readouterr().err
