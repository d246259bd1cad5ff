"""Capturing a run's stdout and stderr below Python, at the file descriptors, for the log shipper.

The runner points descriptors 1 and 2 at pipes; a reader thread per stream copies what arrives
to where the descriptor went before (the container's log, which the cloud keeps) and hands the
complete lines to the shipper as text, many lines at a time. A ``print()`` therefore costs what
it cost before (a write to a pipe), and output written below Python — a C library, a
subprocess that inherited the descriptor — is captured too. Lines are not attributed to task
runs (the run logger's records are); a line left unfinished for ``PARTIAL_AFTER`` seconds is
sent as it is.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from pushpool.control_plane.models import MAX_LOG_LINE_CHARS

#: ``fcntl``'s F_SETPIPE_SZ (Linux): a larger pipe lets a burst of prints through without waiting.
_F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20
READ_BYTES = 1 << 20
#: How long an unfinished line waits for its end before it is sent as it is.
PARTIAL_AFTER = 1.0
#: The reader sleeps this long after a read, so a stream of small writes is handled in large pieces (not when
#: the pipe was more than half full: then the writer would soon wait).
GATHER_SECONDS = 0.02
#: Text kept back waiting for its line to end is sent once it is this long (whole pieces of a kept line).
MAX_PARTIAL_CHARS = MAX_LOG_LINE_CHARS

OnText = Callable[[str, str, float], None]  # (stream, lines joined by "\n", epoch seconds)


class LineCutter:
    """Cuts what one stream writes into the lines the shipper sends: complete lines go on at once (many joined by
    newlines), an unfinished line waits for its end — or for ``flush_partial()``, or until it is
    ``MAX_PARTIAL_CHARS`` long, when whole pieces of it go."""

    def __init__(self, stream: str, on_text: OnText) -> None:
        self.stream, self._on_text = stream, on_text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""
        self._broken = False

    def feed(self, data: bytes) -> None:
        self._take(self._decoder.decode(data))

    def flush_partial(self) -> None:
        """Send an unfinished line as it is (it waited long enough)."""
        if self._partial:
            self._take("", everything=True)

    def finish(self) -> None:
        """The stream has ended: send everything kept."""
        self._take(self._decoder.decode(b"", final=True), everything=True)

    def _take(self, text: str, *, everything: bool = False) -> None:
        """Send the complete lines of what arrived; keep an unfinished line (or ``everything``: send it too)."""
        if self._broken and text:  # an unfinished line was sent as it was: its newline, arriving now, is not a line
            text = text.removeprefix("\n")
            self._broken = False
        text = self._partial + text
        if everything:
            self._partial = ""
            if text:
                self._on_text(self.stream, text, time.time())
                self._broken = True
            return
        end = text.rfind("\n")
        if end < 0:  # no line ends yet: send whole pieces of a very long line, keep the rest
            whole = len(text) - len(text) % MAX_PARTIAL_CHARS
            self._partial = text[whole:]
            if whole:
                self._on_text(self.stream, text[:whole], time.time())
                self._broken = not self._partial
            return
        self._partial = text[end + 1:]
        self._on_text(self.stream, text[:end], time.time())


def large_pipe() -> tuple[int, int, int]:
    """A pipe (read end, write end) made as large as Linux allows us, and its size in bytes."""
    read_end, write_end = os.pipe()
    size = 65_536  # Linux's default
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import fcntl

        size = fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
    return read_end, write_end, size


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` whole; where the output went may be gone (it still reaches the control plane)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except OSError:
            return


class CapturedDescriptor:
    """One descriptor (1 or 2) pointed at a pipe whose reader writes through and sends lines on."""

    def __init__(self, fd: int, stream: str, on_text: OnText) -> None:
        self.fd, self.stream = fd, stream
        self.saved = os.dup(fd)
        read_end, write_end, self._pipe_bytes = large_pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self._read_end = read_end
        self._lock = threading.Lock()
        self._lines = LineCutter(stream, on_text)
        self._thread = threading.Thread(target=self._read, name=f"pushpool-{stream}-capture", daemon=True)
        self._thread.start()

    def _write_through(self, data: bytes) -> None:
        write_all(self.saved, data)

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._read_end], [], [], PARTIAL_AFTER)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                break
            with self._lock:
                if not ready:
                    self._lines.flush_partial()
                    continue
                read = self._drain()
            if read < 0:
                break
            if read < self._pipe_bytes // 2:
                time.sleep(GATHER_SECONDS)
        with self._lock:
            self._lines.finish()
            with contextlib.suppress(OSError):
                os.close(self._read_end)
            self._read_end = -1

    def _drain(self) -> int:
        """Read what the pipe holds (under the lock): how many bytes, or -1 once it is closed."""
        total = 0
        while True:
            try:
                data = os.read(self._read_end, READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return total
            except OSError:
                return -1
            if not data:
                return -1
            total += len(data)
            self._write_through(data)
            self._lines.feed(data)
            if len(data) < READ_BYTES:
                return total

    def catch_up(self) -> None:
        """Send on the lines written so far, now, in the calling thread: a run logger's record is shipped after
        what was printed before it."""
        with self._lock:
            if self._read_end >= 0:
                self._drain()

    def restore(self, timeout: float) -> None:
        """Point the descriptor back where it went; wait up to ``timeout`` s for the reader to send the rest (a
        subprocess still holding the pipe keeps it open: its later output is then not captured)."""
        os.dup2(self.saved, self.fd)
        self._thread.join(timeout)
        os.close(self.saved)


def flush_python_streams() -> None:
    for python_stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            python_stream.flush()


@dataclass
class Capture:
    """What the block sees while output is captured."""

    #: A text stream to where stderr went before (for messages that must not be captured themselves).
    real_stderr: TextIO
    streams: list[CapturedDescriptor]

    def catch_up(self) -> None:
        """Send on everything written so far (before a record of the run logger, so the order holds)."""
        flush_python_streams()
        for stream in self.streams:
            stream.catch_up()


@contextlib.contextmanager
def captured_output(on_text: OnText, *, restore_timeout: float = 2.0) -> Iterator[Capture]:
    """Capture descriptors 1 and 2 while the block runs. Without usable descriptors (an embedding that closed
    them), nothing is captured."""
    streams: list[CapturedDescriptor] = []
    flush_python_streams()
    try:
        for fd, name in ((1, "stdout"), (2, "stderr")):
            streams.append(CapturedDescriptor(fd, name, on_text))
    except OSError:
        for stream in streams:
            stream.restore(restore_timeout)
        yield Capture(sys.__stderr__ or sys.stderr, [])
        return
    real_stderr = open(streams[1].saved, "w", buffering=1, closefd=False, encoding="utf-8",  # noqa: SIM115
                       errors="replace")
    try:
        yield Capture(real_stderr, streams)
    finally:
        flush_python_streams()
        real_stderr.close()  # leaves the descriptor open (closefd=False): restore() closes it
        deadline = time.monotonic() + restore_timeout
        for stream in streams:
            stream.restore(max(0.0, deadline - time.monotonic()))
