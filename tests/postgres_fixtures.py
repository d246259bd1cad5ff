"""A real PostgreSQL for the tests: Debian's ``postgresql`` (installed by the set-up when missing), a private
cluster made with ``initdb`` in a temporary directory, listening on 127.0.0.1 only, stopped at the end.

``postgres_server`` (session) is the running cluster; ``postgres_url`` (per test) is a fresh, empty database
on it, so tests never see each other's rows. Registered as fixtures by tests/conftest.py.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.net import free_port
from tests.registry_fixtures import apt_install

USER = "pushpool"
_databases = itertools.count(1)


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and apt_install("postgresql"):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: as the package's ``postgres`` user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PostgresServer:
    bin_dir: Path
    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                 "-d", self.url(database), "-c", sql], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                     "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(self.data.parent, ignore_errors=True)

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(_databases)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_postgres() -> PostgresServer | None:
    """A new private cluster on 127.0.0.1 (None when PostgreSQL cannot be had here); ``stop()`` removes it."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="pushpool-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
                                 "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
                   check=True, capture_output=True, timeout=300)
    port = free_port()
    options = (f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=300")
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                 "-w", "-t", "120", "start"]), check=True, capture_output=True, timeout=180)
    return PostgresServer(bin_dir, data, port)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason="the 'postgresql' extra is not installed")
    server = start_postgres()
    if server is None:
        pytest.skip("Debian's postgresql is not installed and apt-get cannot install it here")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()
