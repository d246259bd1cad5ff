"""Walls a ``local:push`` run off from the control plane that started it (Linux namespaces).

Started by :mod:`pushers.local_supervisor` as
``python -m pushers.local_sandbox [--hide PATH]... -- COMMAND...``. It needs no privileges: an
unprivileged user namespace gives it the right to make its own mount and pid namespaces.

1. A user + mount namespace in which each hidden path (the server's home, database and key files,
   the CLI's profiles) is covered: a directory by an empty read-only tmpfs, a file by ``/dev/null``.
2. A second, nested user + mount + pid namespace for the run. Mounts inherited by a less privileged
   mount namespace are locked together (mount_namespaces(7)), so the run cannot unmount the covers
   to see what is under them, even as "root" of its own namespace.
3. A fresh ``/proc`` for the new pid namespace: the run sees only its own processes, not the server
   (whose environment and open files ``/proc/<pid>`` would otherwise show to the same user).

A small init (this process, pid 1 of the run's namespace) forwards SIGTERM/SIGINT to the command
and exits with its code; when it exits, the kernel kills whatever the run left behind.
``--probe`` only checks that all of this works here (exit 0) or says why not (exit 1).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
#: The sandbox's own failure (not the run's): the supervisor reports it as "could not start".
SANDBOX_FAILED = 125


class SandboxUnavailable(OSError):
    """The kernel refused a namespace or mount the sandbox needs."""


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("host isolation needs Linux namespaces; this is " + sys.platform)
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SandboxUnavailable(f"{what}: {os.strerror(errno)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _enter_user_namespace(libc: ctypes.CDLL, extra_flags: int) -> None:
    """Become root of a new user namespace (mapped to whoever we were) together with ``extra_flags``."""
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | extra_flags), "unshare (user namespaces)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data)),
           f"mount {target}")


def _bytes(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _forward_signals_to(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)


def _cover(libc: ctypes.CDLL, path: Path) -> None:
    if path.is_dir():
        _mount(libc, "pushpool-hidden", str(path), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
               "size=4k,mode=0555")
    elif path.exists():
        _mount(libc, "/dev/null", str(path), None, MS_BIND)


def enter(hidden: list[Path]) -> None:
    """Steps 1 and 2 (the caller then forks: its child is the first process of the new pid namespace)."""
    libc = _libc()
    _enter_user_namespace(libc, 0)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    for path in hidden:
        _cover(libc, path)
    _enter_user_namespace(libc, CLONE_NEWPID)


def _init(command: list[str]) -> int:
    """Pid 1 of the run's namespace: a fresh /proc, then the command as a child, signals forwarded."""
    libc = _libc()
    _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"pushpool: could not start {command[0]!r}: {exc.strerror}", file=sys.stderr)
            os._exit(127)

    _forward_signals_to(child)
    while True:
        pid, status = os.waitpid(-1, 0)  # pid 1 reaps orphans too
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run(hidden: list[Path], command: list[str]) -> int:
    try:
        enter(hidden)
    except (SandboxUnavailable, OSError) as exc:
        print(f"pushpool: host isolation failed: {exc}", file=sys.stderr)
        return SANDBOX_FAILED
    init = os.fork()
    if init == 0:
        try:
            code = _init(command)
        except (SandboxUnavailable, OSError) as exc:
            print(f"pushpool: host isolation failed: {exc}", file=sys.stderr)
            code = SANDBOX_FAILED
        os._exit(128 - code if code < 0 else code)

    _forward_signals_to(init)
    _, status = os.waitpid(init, 0)
    return _exit_code(status)


def package_root() -> str | None:
    """The directory holding the ``pushpool`` package, so ``python -m pushpool.…`` works from a plain copy;
    None for an editable install (its import hook, in site-packages, finds the package already)."""
    package_dir = Path(__file__).resolve().parent.parent  # pushpool/pushers/local_sandbox.py in a wheel
    return str(package_dir.parent) if package_dir.name == "pushpool" else None


def probe() -> str | None:
    """None when isolation works on this machine, else why not (one line)."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-m", "pushpool.pushers.local_sandbox", "--", "true"],
                              capture_output=True, text=True, timeout=30,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                   "PYTHONPATH": package_root() or ""})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1].removeprefix("pushpool: ")


def main(argv: list[str]) -> int:
    hidden: list[Path] = []
    while argv and argv[0] == "--hide":
        hidden.append(Path(argv[1]))
        argv = argv[2:]
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: python -m pushers.local_sandbox [--hide PATH]... -- COMMAND...", file=sys.stderr)
        return 2
    return run(hidden, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
