"""Run what a container would run, locally: the exact command and environment a pusher submitted.

The image's entry point ``pushpool-runner`` is this checkout's runner; the environment is the
submitted one (no PUSHPOOL_*, AWS_* or MODAL_* variables leak in from the test process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST_PREFIXES = ("PUSHPOOL_", "AWS_", "MODAL_", "DASK_")


def run_as_container(command: list[str], env: dict[str, str], workdir: Path, timeout: float = 60,
                     pythonpath: str | None = None) -> tuple[int, str]:
    """(exit code, stdout + stderr) of ``command`` run with ``env`` in ``workdir``; ``pythonpath`` instead of this
    checkout (what the image has installed)."""
    if command == ["pushpool-runner"]:
        command = [sys.executable, "-m", "pushpool.runner"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(HOST_PREFIXES)}
    full_env.update(env)
    full_env["PYTHONPATH"] = pythonpath or str(REPO)
    result = subprocess.run(command, env=full_env, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr
