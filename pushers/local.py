"""``local:push``: runs each flow run as a subprocess on the control plane's machine.

The embedded default that lets anyone try the whole loop with no cloud account.
Files under ``<state_dir>/local-runs/``:

* ``<run id>.submit`` — created exclusively before anything starts, naming the control plane
  process that starts it; holds the infra id once the process is up, so a repeated submit never
  starts a second process (written whole each time: a reader never sees it empty);
* ``pid-<pid>.json`` — written by the supervisor: child pid, then the exit code;
* ``<run id>.log`` — the run's stdout and stderr (the run's "console URL").

A run gets a minimal environment (never the server's: no ``AWS_*``, no ``PUSHPOOL_*`` but its own
run context) and, on Linux, is walled off by :mod:`pushers.local_sandbox` so it cannot see the
server's home, database, key files or processes. Who may start host runs at all is decided by the
control plane (:mod:`control_plane.services.host_runs`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from pushpool.pushers.base import (
    MAX_RUNTIME_SECONDS,
    InfraState,
    InfraStatus,
    Job,
    PermanentPusherError,
    PusherContext,
    Submission,
    TransientPusherError,
    classify_exit_code,
)
from pushpool.pushers.local_sandbox import package_root

CANCEL_GRACE_SECONDS = 10.0
#: What a host run inherits from the server's environment (plus ``PUSHPOOL_HOST_ENV_PASSTHROUGH``).
MINIMAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR")
#: A submit marker left this long without an infra id, and no process of the run, means
#: the control plane died before spawning: the run may be started again.
ABANDONED_MARKER_SECONDS = 10.0


#: A marker whose spawn is under way names the control plane process making it (pid and start time), so a
#: marker left by a control plane that died is known at once rather than after ABANDONED_MARKER_SECONDS.
SPAWNING = "spawning:"


def _process_start(pid: int) -> str | None:
    """A process's start time (Linux /proc), which tells it from a later process given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _spawning_mark() -> str:
    return f"{SPAWNING}{os.getpid()}:{_process_start(os.getpid()) or ''}"


def _spawner_alive(content: str) -> bool:
    """Whether the control plane that wrote a spawning marker still runs (unknown: assume it does)."""
    if not content.startswith(SPAWNING):
        return False
    pid_text, _, started = content[len(SPAWNING):].partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    return not started or _process_start(pid) in (started, None)


def _written_beside(path: Path, content: str) -> Path:
    """A private temporary file next to ``path`` holding ``content`` whole, to be linked or renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(content)
    return temporary


def _create_file(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content`` whole (a reader never sees it empty); ``False`` when it exists."""
    temporary = _written_beside(path, content)
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def _replace_file(path: Path, content: str) -> None:
    """Replace ``path``'s content at once (a reader sees the old or the new, never a part)."""
    os.replace(_written_beside(path, content), path)


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def host_environment(job_env: dict[str, str], passthrough: tuple[str, ...] = ()) -> dict[str, str]:
    """A host run's environment: a minimal set from the server's, the job's own, never the server's secrets."""
    env = {k: v for k, v in os.environ.items() if k in MINIMAL_ENV or k in passthrough}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(job_env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root(), job_env.get("PYTHONPATH")]))
    return env


def _within(path: Path, parent: Path) -> bool:
    resolved = path.resolve()
    return resolved == parent or parent in resolved.parents


_isolation: dict[str, str | None] = {}


def isolation_problem() -> str | None:
    """Why host runs cannot be isolated here (probed once per process), or None when they can."""
    if "problem" not in _isolation:
        from pushpool.pushers.local_sandbox import probe

        _isolation["problem"] = probe()
    return _isolation["problem"]


class LocalPusher:
    def __init__(self, context: PusherContext) -> None:
        self.host_runs = context.host_runs
        self.dir = context.state_dir / "local-runs"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return {
            "job_configuration": {
                "command": "{{ command }}",
                "env": "{{ env }}",
                "working_dir": "{{ working_dir }}",
                "labels": "{{ labels }}",
                "max_runtime_seconds": "{{ max_runtime_seconds }}",
            },
            "variables": {
                "type": "object",
                "properties": {
                    "command": {
                        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                        "description": "Command to run instead of the pushpool runner.",
                    },
                    "env": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "Environment variables for the run."},
                    "working_dir": {"type": "string",
                                    "description": "Directory the run starts in; entrypoints are relative to it."},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "max_runtime_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_RUNTIME_SECONDS,
                                            "default": 86400, "description": "Stop the run after this long."},
                },
            },
        }

    # ------------------------------------------------------------------ paths
    def _marker(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.submit"

    def _state(self, infra_id: str) -> Path:
        return self.dir / f"{infra_id}.json"

    def log_path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.log"

    @staticmethod
    def _pid(infra_id: str) -> int:
        return int(infra_id.removeprefix("pid-"))

    # ------------------------------------------------------------------ protocol
    def submit(self, job: Job) -> Submission:
        marker = self._marker(job.idempotency_key)
        if not _create_file(marker, _spawning_mark()):
            content = _read_marker(marker)
            if content is None:  # a failed spawn removed it since: nothing is under way
                raise TransientPusherError("a submission of this run just failed; trying again")
            existing = (content if content.startswith("pid-") else "") or self._find_process_of(job.flow_run_id)
            if existing:
                _replace_file(marker, existing)
                return self._submission(existing, job.flow_run_id)
            if _spawner_alive(content) or (not content.startswith(SPAWNING) and
                                           time.time() - marker.stat().st_mtime < ABANDONED_MARKER_SECONDS):
                # A spawn is under way (its control plane lives), or a marker of an older release is fresh.
                raise TransientPusherError("a submission of this run may be in progress; checking again") from None
            _replace_file(marker, _spawning_mark())  # the control plane that made it died before spawning
        try:
            infra_id = self._spawn(job)
        except BaseException:
            marker.unlink(missing_ok=True)  # nothing started: a later attempt may try again
            raise
        _replace_file(marker, infra_id)
        return self._submission(infra_id, job.flow_run_id)

    def _find_process_of(self, run_id: str) -> str | None:
        """The infra id of a supervisor started for ``run_id`` whose marker was never completed: from its state
        file, or — when it has not written one yet — from the processes of this directory's runs."""
        for state_file in self.dir.glob("pid-*.json"):
            try:
                if json.loads(state_file.read_text()).get("run_id") == run_id:
                    return state_file.stem
            except (OSError, json.JSONDecodeError):
                continue
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                # the shim names the directory, the supervisor it becomes its state file in it
                if any(arg == str(self.dir) or arg.startswith(f"{self.dir}/pid-")
                       for arg in process.info["cmdline"] or []) and \
                        process.environ().get("PUSHPOOL_FLOW_RUN_ID") == run_id:
                    return f"pid-{process.info['pid']}"
            except psutil.Error:
                continue
        return None

    def _submission(self, infra_id: str, run_id: str) -> Submission:
        return Submission(infra_id=infra_id, console_url=self.log_path(run_id).resolve().as_uri())

    def _spawn(self, job: Job) -> str:
        policy = self.host_runs
        if not policy.allowed:
            raise PermanentPusherError("local:push is disabled on this server (PUSHPOOL_HOST_PROCESSES=off)")
        config = job.configuration
        command = job.command or [sys.executable, "-m", "pushpool.runner"]
        cwd = config.get("working_dir") or None
        if cwd and not Path(cwd).is_dir():
            raise PermanentPusherError(f"working_dir {cwd!r} does not exist on the control plane's machine")
        if cwd and any(_within(Path(cwd), hidden) for hidden in policy.hidden_paths):
            raise PermanentPusherError(f"working_dir {cwd!r} is inside a directory host runs may not see "
                                       "(the control plane's home); move the project elsewhere")
        env = host_environment(job.env, policy.env_passthrough)
        log = open(self.log_path(job.flow_run_id), "ab")  # noqa: SIM115 - handed to the child
        try:
            os.chmod(log.name, 0o600)
            sandboxed = self._sandboxed(log)
            if sandboxed:
                hide = [arg for path in policy.hidden_paths for arg in ("--hide", str(path))]
                command = [sys.executable, "-m", "pushpool.pushers.local_sandbox", *hide, "--", *command]
            process = self._start(command, cwd, env, log)
        except OSError as exc:
            raise PermanentPusherError(f"could not start {command[0]!r}: {exc.strerror}") from exc
        finally:
            log.close()
        return f"pid-{process.pid}"

    def _sandboxed(self, log: Any) -> bool:
        """Whether to wall this run off (see pushers/local_sandbox.py); says so in the run's log when it cannot."""
        mode = self.host_runs.isolation
        if mode == "none":
            return False
        why = isolation_problem()
        if why is None:
            return True
        if mode == "required":
            raise PermanentPusherError(f"host isolation is required (PUSHPOOL_HOST_ISOLATION=required) but not "
                                       f"available on this machine: {why}")
        log.write(f"pushpool: running without host isolation ({why}); this run can read what the server's "
                  "user can read\n".encode())
        log.flush()
        return False

    def _start(self, command: list[str], cwd: str | None, env: dict[str, str], log: Any) -> subprocess.Popen:
        # The supervisor learns its own state-file name from its pid, so start it through a
        # tiny shim that knows the pid before exec'ing the supervisor.
        shim = ("import os, sys; os.execv(sys.executable, [sys.executable, '-m', 'pushpool.pushers.local_supervisor', "
                "os.path.join(sys.argv[1], 'pid-%d.json' % os.getpid())] + sys.argv[2:])")
        process = subprocess.Popen(
            [sys.executable, "-c", shim, str(self.dir), "--", *command],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self._lock:
            self._children[process.pid] = process
        return process

    def _reap(self, pid: int) -> None:
        with self._lock:
            child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            with self._lock:
                self._children.pop(pid, None)

    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        return {infra_id: self._status_of(infra_id) for infra_id in infra_ids}

    def _status_of(self, infra_id: str) -> InfraStatus:
        pid = self._pid(infra_id)
        self._reap(pid)
        state = self._read_state(infra_id)
        if state and state.get("exit_code") is not None:
            code = int(state["exit_code"])
            return InfraStatus(InfraState.EXITED, code, None if code == 0 else classify_exit_code(code))
        if self._alive(pid, state):
            return InfraStatus(InfraState.RUNNING if state else InfraState.PENDING)
        return InfraStatus(InfraState.MISSING, reason="the run's process vanished without recording an exit code")

    def _read_state(self, infra_id: str) -> dict | None:
        try:
            return json.loads(self._state(infra_id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @staticmethod
    def _alive(pid: int, state: dict | None) -> bool:
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            # A recycled pid started after our supervisor did is not ours.
            return state is None or process.create_time() <= state["started"] + 1
        except psutil.Error:
            return False

    def cancel(self, infra_id: str) -> None:
        pid = self._pid(infra_id)
        cancel_file = self.dir / f"{infra_id}.cancel"
        first = not cancel_file.exists()
        if first:
            cancel_file.write_text(str(time.time()))
        escalate = not first and time.time() - float(cancel_file.read_text() or 0) > CANCEL_GRACE_SECONDS
        try:
            os.killpg(pid, signal.SIGKILL if escalate else signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise PermanentPusherError(f"not allowed to stop process group {pid}: {exc}") from exc
        self._reap(pid)

    def cleanup(self, infra_id: str) -> None:
        self._reap(self._pid(infra_id))
        for path in (self._state(infra_id), self.dir / f"{infra_id}.cancel"):
            path.unlink(missing_ok=True)
