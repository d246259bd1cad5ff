"""The log relay: a process beside the runner that reads a run's stdout and stderr, writes them through and ships them.

Why a process: captured in the flow's own interpreter, every ``print()`` handed the GIL to the
reader thread and took it back, and reading, cutting and sending cost the flow a fifth of its
time on a print-heavy benchmark (docs/benchmarks.md). Here the flow's descriptors 1 and 2 are
pipes whose only reader is the relay, so a print costs the flow one write to a pipe, as it
would with no capture at all.

The runner starts the relay first thing (:meth:`LogRelay.start`: its imports overlap the
runner's first requests), then, around the flow, hands it the API's address and the run token
on its stdin and points descriptors 1 and 2 at its pipes (:meth:`LogRelay.begin`). A record of
the run logger travels in the stdout pipe itself, as a frame the relay takes out before writing
through (``FRAME_MARK``, 8 hex digits of length, the record as JSON), so it is shipped in the
order it was logged among the prints; what stderr held when the relay meets a record is sent
before it. The relay ends when the runner says so (or its stdin closes: the runner is gone),
after the pipes close or ``restore_timeout`` seconds, then sends what is left for at most
``close_timeout`` seconds and reports its counts on a status pipe. It ignores SIGINT and
SIGTERM: a cancelled run's last lines and hooks are still shipped. Should it die while the run
goes on (killed, out of memory), the runner points descriptors 1 and 2 back at the container's
log and says so: the flow never fails for its log shipping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from pushpool.output_capture import (
    GATHER_SECONDS,
    PARTIAL_AFTER,
    READ_BYTES,
    LineCutter,
    flush_python_streams,
    large_pipe,
    write_all,
)

#: Opens a record's frame in the stdout pipe (ASCII record separator + a name: not text anyone prints).
FRAME_MARK = b"\x1epushpool-record:"
FRAME_HEADER = len(FRAME_MARK) + 8
#: A frame announcing more than this is not a frame (its bytes are text).
MAX_FRAME_BYTES = 1 << 20
#: How long the runner waits for the relay to be ready before it captures in its own process instead.
READY_SECONDS = 30.0


class RelayUnavailable(Exception):
    """The relay could not be started or did not answer: the runner captures in its own process."""


def encode_record(line: dict[str, Any]) -> bytes:
    payload = json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
    return FRAME_MARK + b"%08x" % len(payload) + payload


class FrameSplitter:
    """Separates the frames of records from the text around them in the stdout pipe's bytes, in order; a frame
    cut by the end of a read waits for the rest."""

    def __init__(self) -> None:
        self._held = b""

    def split(self, data: bytes) -> list[bytes | dict[str, Any]]:
        data, self._held = self._held + data, b""
        pieces: list[bytes | dict[str, Any]] = []
        start = search = 0
        while (at := data.find(FRAME_MARK[:1], search)) >= 0:
            head = data[at:at + FRAME_HEADER]
            if len(head) < FRAME_HEADER and FRAME_MARK.startswith(head[:len(FRAME_MARK)]):
                self._held = data[at:]  # maybe a frame, its header not all here yet
                data = data[:at]
                break
            record, end = self._frame_at(data, at)
            if end < 0:  # a frame whose payload is still on its way
                self._held = data[at:]
                data = data[:at]
                break
            if record is None:  # not a frame: the byte is text
                search = at + 1
                continue
            if at > start:
                pieces.append(data[start:at])
            pieces.append(record)
            start = search = end
        if start < len(data):
            pieces.append(data[start:])
        return pieces

    @staticmethod
    def _frame_at(data: bytes, at: int) -> tuple[dict[str, Any] | None, int]:
        """(the record, where its frame ends); (None, 0) when this is no frame; (None, -1) when it is cut short."""
        if data[at:at + len(FRAME_MARK)] != FRAME_MARK:
            return None, 0
        digits = data[at + len(FRAME_MARK):at + FRAME_HEADER]
        try:
            length = int(digits, 16)
        except ValueError:
            return None, 0
        if length > MAX_FRAME_BYTES:
            return None, 0
        end = at + FRAME_HEADER + length
        if len(data) < end:
            return None, -1
        try:
            record = json.loads(data[at + FRAME_HEADER:end])
        except ValueError:
            return None, 0
        return (record, end) if isinstance(record, dict) else (None, 0)

    def finish(self) -> bytes:
        """What was held back when the stream ended (a frame cut short is text)."""
        held, self._held = self._held, b""
        return held


@dataclass
class _Stream:
    fd: int
    write_fd: int
    lines: LineCutter
    frames: FrameSplitter | None = None
    open: bool = True


@dataclass
class Relay:
    """The relay's loop (in the relay process): ``shipper`` is a :class:`pushpool.reporting.LogShipper`."""

    shipper: Any
    stdout_fd: int
    stderr_fd: int
    control_fd: int | None = None
    write_stdout: int = 1
    write_stderr: int = 2
    restore_timeout: float = 2.0
    streams: list[_Stream] = field(init=False)

    def __post_init__(self) -> None:
        self.streams = [
            _Stream(self.stdout_fd, self.write_stdout, LineCutter("stdout", self.shipper.emit_text), FrameSplitter()),
            _Stream(self.stderr_fd, self.write_stderr, LineCutter("stderr", self.shipper.emit_text)),
        ]
        for stream in self.streams:
            os.set_blocking(stream.fd, False)

    def run(self, closing: bool = False) -> None:
        """Relay until both pipes close, or — once told to finish (``closing``, a line on the control channel or its
        end) — for at most ``restore_timeout`` seconds more."""
        deadline = time.monotonic() + self.restore_timeout if closing else None
        control = None if closing else self.control_fd
        try:
            while any(stream.open for stream in self.streams):
                watched = [stream.fd for stream in self.streams if stream.open] + ([control] if control else [])
                timeout = PARTIAL_AFTER if deadline is None else max(0.0, min(PARTIAL_AFTER,
                                                                                deadline - time.monotonic()))
                try:
                    ready, _, _ = select.select(watched, [], [], timeout)
                except InterruptedError:
                    continue
                if control is not None and control in ready:
                    with contextlib.suppress(OSError):
                        os.read(control, 4096)  # "close", or nothing: the runner is gone
                    control, deadline = None, time.monotonic() + self.restore_timeout
                if not ready:
                    for stream in self.streams:
                        stream.lines.flush_partial()
                read = sum(max(0, self._drain(stream)) for stream in self.streams if stream.open and stream.fd in ready)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if 0 < read < READ_BYTES // 2:
                    time.sleep(GATHER_SECONDS)  # let a stream of small writes gather
        finally:
            for stream in self.streams:
                if stream.open:
                    self._drain(stream)
                if stream.frames is not None:
                    self._text(stream, stream.frames.finish())
                stream.lines.finish()
                with contextlib.suppress(OSError):
                    os.close(stream.fd)

    def _drain(self, stream: _Stream) -> int:
        """Read what the pipe holds: how many bytes, or -1 once it has closed."""
        total = 0
        while True:
            try:
                data = os.read(stream.fd, READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return total
            except OSError:
                data = b""
            if not data:
                stream.open = False
                return -1
            total += len(data)
            if stream.frames is None:
                self._text(stream, data)
            else:
                for piece in stream.frames.split(data):
                    if isinstance(piece, bytes):
                        self._text(stream, piece)
                    else:  # what was written to stderr before the record goes first
                        if self.streams[1].open:
                            self._drain(self.streams[1])
                        self.shipper.emit(piece)
            if len(data) < READ_BYTES:
                return total

    @staticmethod
    def _text(stream: _Stream, data: bytes) -> None:
        if data:
            write_all(stream.write_fd, data)
            stream.lines.feed(data)


@dataclass
class RelayTarget:
    """Where a run's logs go: the API, the run's token and workspace, the run."""

    api_url: str
    api_key: str
    workspace: str
    run_id: str
    close_timeout: float = 30.0
    restore_timeout: float = 2.0


def log_shipper_for(target: RelayTarget) -> Any:
    """The :class:`pushpool.reporting.LogShipper` that sends ``target``'s lines: the relay's, or the runner's own
    when the relay cannot run."""
    from pushpool.client import PushpoolClient
    from pushpool.reporting import LogShipper, log_sender

    client = PushpoolClient(target.api_url, target.api_key, workspace=target.workspace, retries=2)
    return LogShipper(log_sender(client, target.run_id), close_timeout=target.close_timeout, on_close=client.close)


@dataclass
class RelayedCapture:
    """What the runner holds while the relay captures: its stderr from before, and how records are sent."""

    real_stderr: TextIO
    record_fd: int
    #: The relay ended before the run did: records are no longer sent (output goes to the container's log).
    relay_gone: bool = False

    def emit_record(self, line: dict[str, Any]) -> None:
        if self.relay_gone:
            return
        flush_python_streams()  # what was printed before the record goes first
        write_all(self.record_fd, encode_record(line))


class LogRelay:
    """The runner's handle on its relay process."""

    def __init__(self, process: subprocess.Popen, pipes: dict[str, int]) -> None:
        self.process, self._pipes = process, pipes
        self.summary: dict[str, Any] = {}
        self._capture: RelayedCapture | None = None
        self._saved: tuple[int, int] | None = None
        self._target: RelayTarget | None = None
        self._ending = False
        self._descriptors = threading.Lock()

    @classmethod
    def start(cls) -> LogRelay:
        """Start the relay process (it imports what it needs while the runner goes on); raises
        :class:`RelayUnavailable` when it cannot be started."""
        out_r, out_w, _ = large_pipe()
        err_r, err_w, _ = large_pipe()
        status_r, status_w = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "pushpool.log_relay", str(out_r), str(err_r), str(status_w)],
                stdin=subprocess.PIPE, pass_fds=(out_r, err_r, status_w), close_fds=True)
        except OSError as exc:
            for fd in (out_r, out_w, err_r, err_w, status_r, status_w):
                os.close(fd)
            raise RelayUnavailable(f"the log relay could not be started: {exc}") from exc
        os.close(status_w)
        # The read ends stay open here too: should the relay die, the flow's writes fill a pipe (and are then
        # pointed back at the container's log, see _watch) instead of failing with a broken pipe.
        return cls(process, {"out": out_w, "err": err_w, "status": status_r, "out_r": out_r, "err_r": err_r})

    def begin(self, target: RelayTarget) -> RelayedCapture:
        """Hand the relay its target, wait until it is ready, and point descriptors 1 and 2 at its pipes."""
        self._target = target
        config = dataclasses.asdict(target)
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(config).encode() + b"\n")
            self.process.stdin.flush()
        except (OSError, ValueError) as exc:
            self.stop()
            raise RelayUnavailable(f"the log relay is gone: {exc}") from exc
        if self._read_status(READY_SECONDS) != "ready":
            self.stop()
            raise RelayUnavailable("the log relay did not start in time")
        flush_python_streams()
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._pipes["out"], 1)
        os.dup2(self._pipes["err"], 2)
        os.close(self._pipes.pop("err"))
        real_stderr = open(self._saved[1], "w", buffering=1, closefd=False, encoding="utf-8",  # noqa: SIM115
                           errors="replace")
        self._capture = RelayedCapture(real_stderr, self._pipes["out"])
        threading.Thread(target=self._watch, name="pushpool-log-relay-watch", daemon=True).start()
        return self._capture

    def _watch(self) -> None:
        """Should the relay end while the run goes on (killed, out of memory), point descriptors 1 and 2 back at
        the container's log and say so: the flow goes on, its output is no longer shipped."""
        code = self.process.wait()
        with self._descriptors:
            if self._ending or self._saved is None or self._capture is None:
                return
            self._capture.relay_gone = True
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            print(f"pushpool: the log relay ended (exit {code}); the run's output is no longer sent to the "
                  "control plane", file=self._capture.real_stderr, flush=True)

    def end(self) -> dict[str, Any]:
        """Point descriptors 1 and 2 back, tell the relay to finish and wait for its counts (sent, dropped,
        requests)."""
        flush_python_streams()
        with self._descriptors:
            self._ending = True
            if self._capture is not None:
                self._capture.real_stderr.close()
            if self._saved is not None:
                os.dup2(self._saved[0], 1)
                os.dup2(self._saved[1], 2)
                for fd in self._saved:
                    os.close(fd)
                self._saved = None
        self.stop()
        return self.summary

    def stop(self) -> None:
        """Close our ends and let the relay finish (idempotent); it is killed if it outlives its own timeouts."""
        for name in ("out", "err"):
            if name in self._pipes:
                os.close(self._pipes.pop(name))
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None and not self.process.stdin.closed:
                if self._target is not None:  # else the end of its stdin says it was not needed
                    self.process.stdin.write(b"close\n")
                self.process.stdin.close()
        if "status" in self._pipes:
            target = self._target or RelayTarget("", "", "", "")
            status = self._read_status(target.restore_timeout + target.close_timeout + 5.0)
            with contextlib.suppress(ValueError):
                self.summary = json.loads(status or "{}")
            os.close(self._pipes.pop("status"))
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for name in ("out_r", "err_r"):
            if name in self._pipes:
                os.close(self._pipes.pop(name))

    def _read_status(self, timeout: float) -> str | None:
        """The relay's next line on the status pipe, or ``None`` when it ended or did not write one in time."""
        deadline, line = time.monotonic() + timeout, b""
        fd = self._pipes["status"]
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            byte = os.read(fd, 1)
            if not byte:
                return None
            line += byte
        return line.decode().strip()


def _read_config(fd: int) -> tuple[dict[str, Any] | None, bool]:
    """The first line on ``fd`` (the runner's configuration) and whether the runner has already said to finish."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None, True
        data += chunk
    line, rest = data.split(b"\n", 1)
    return json.loads(line), bool(rest)


def main(argv: list[str]) -> int:
    """``python -m pushpool.log_relay STDOUT_FD STDERR_FD STATUS_FD``, its configuration on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out_fd, err_fd, status_fd = (int(arg) for arg in argv)
    config, closing = _read_config(0)
    if config is None:  # the runner went on without us
        return 0
    target = RelayTarget(**config)
    shipper = log_shipper_for(target)
    shipper.diagnostics = sys.stderr
    write_all(status_fd, b"ready\n")
    Relay(shipper, out_fd, err_fd, control_fd=0, restore_timeout=target.restore_timeout).run(closing)
    shipper.close()
    write_all(status_fd, json.dumps({"sent": shipper.sent, "dropped": shipper.dropped,
                                     "requests": shipper.requests}).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
