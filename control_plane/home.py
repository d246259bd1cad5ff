"""``PUSHPOOL_HOME``: the embedded server's private directory (database, encryption key, run logs).

It is made 0700 and everything in it 0600, so another user of the machine reads nothing; a home
that cannot be written is one clear error naming the path and the fix, before anything starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pushpool.control_plane.errors import ConfigurationError

log = logging.getLogger("pushpool.home")

#: Files that mark a directory as a pushpool home (its permissions may then be tightened).
OWN_FILES = ("encryption.key", "pushpool.db")


def prepare_home(home: Path) -> Path:
    """Create ``home`` (0700) or check an existing one; raise :class:`ConfigurationError` if unusable."""
    try:
        created = not home.exists()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = home.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            if created or any((home / name).exists() for name in OWN_FILES):
                os.chmod(home, 0o700)
            else:
                log.warning("PUSHPOOL_HOME=%s can be read by other users; consider chmod 700", home)
        probe = home / f".pushpool-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"PUSHPOOL_HOME={home} is not a writable directory ({reason}); set PUSHPOOL_HOME "
                                 "to a directory you can write, or fix its permissions") from None
    return home


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with 0600 if it does not exist (SQLite gives its -wal and -shm files the
    same permissions as the database file)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

