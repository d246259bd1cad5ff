"""Checkpoints of a SQLite store's write-ahead log, taken by a thread of their own instead of by a request.

In WAL mode SQLite copies the log back into the database ("checkpoints") when a commit finds the log longer
than ``wal_autocheckpoint`` pages, in the committing thread, with an fsync. With the nine indexes a run has,
that made every ~80th write pay for the eighty before it — half of a run creation's time (measured: 0.55 ms
a creation with automatic checkpoints, 0.25 ms without). The store's connections now check-point only past
:data:`FALLBACK_PAGES` (should this thread fall behind), and :class:`Checkpointer` takes a passive
checkpoint (it never waits for, nor blocks, readers and writers) at most every ``interval`` seconds after
something was written.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading

log = logging.getLogger("pushpool.storage")

#: A committing connection still checkpoints past this many log pages (40 MB), as a fallback.
FALLBACK_PAGES = 10_000
INTERVAL_SECONDS = 0.5


class Checkpointer:
    """One per store: started by its first write, stopped (after a last checkpoint) when the store closes."""

    def __init__(self, path: str, interval: float = INTERVAL_SECONDS) -> None:
        self.path, self.interval = path, interval
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wrote(self) -> None:
        """Something was committed: checkpoint soon."""
        self._dirty.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, name="pushpool-sqlite-checkpoints",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.is_set():
                self._dirty.wait()
                if self._stop.wait(self.interval):
                    break
                self._dirty.clear()
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the next round tries again; a committing connection is the fallback
            log.warning("checkpoint of the SQLite log failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        with contextlib.suppress(RuntimeError):
            if self._thread is not None:
                self._thread.join(timeout=30)
