"""Supervises one local run: starts the runner, forwards SIGTERM, records the exit code.

Started by :class:`pushers.local.LocalPusher` as
``python -m pushers.local_supervisor STATE_FILE -- COMMAND...``. Because the exit
code is written to the state file, the control plane learns how a run ended even
if it was restarted in between (the process is then no longer its child).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(state))
    os.replace(tmp, path)


def exit_code_of(returncode: int) -> int:
    """Report signals the way containers do: 128 + signal number."""
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m pushers.local_supervisor STATE_FILE -- COMMAND...", file=sys.stderr)
        return 2
    state_path, command = Path(argv[0]), argv[2:]
    state: dict = {"supervisor_pid": os.getpid(), "started": time.time(),
                   "run_id": os.environ.get("PUSHPOOL_FLOW_RUN_ID")}
    child = subprocess.Popen(command)
    state["child_pid"] = child.pid
    write_state(state_path, state)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = exit_code_of(child.wait())
    state.update(exit_code=code, ended=time.time())
    write_state(state_path, state)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
