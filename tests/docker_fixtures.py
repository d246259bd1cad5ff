"""A real Docker engine for the Docker backend's tests: Debian's ``docker.io`` (installed by the test
set-up with apt when missing), started as ``dockerd --iptables=false --bridge=none`` on a private
socket, data root and exec root, stopped afterwards. Builds use ``network_mode="none"``.

Registered as fixtures by tests/conftest.py. Skips, saying why, only when no engine can be started."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.registry_fixtures import apt_install


def _dockerd() -> str | None:
    return shutil.which("dockerd") or (apt_install("docker.io") and shutil.which("dockerd"))


@pytest.fixture(scope="session")
def docker_engine() -> Any:
    """The ``DOCKER_HOST`` of a running engine."""
    try:
        import docker
    except ImportError:
        pytest.skip("the docker Python SDK is not installed (pip install -e '.[dev]')")
    binary = _dockerd()
    if binary is None:
        pytest.skip("no Docker engine: dockerd is not installed and apt-get cannot install docker.io here")
    root = Path(tempfile.mkdtemp(prefix="pp-dockerd-"))  # short: a unix socket path has ~100 characters
    host = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [binary, "--iptables=false", "--bridge=none", "--host", host, "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            client = docker.DockerClient(base_url=host, timeout=10)  # asks the engine its version at once
            client.ping()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (root / "dockerd.log").read_text(errors="replace").strip().splitlines()[-3:]
                pytest.skip(f"dockerd did not start here ({' / '.join(tail) or 'no output'})")
            time.sleep(0.3)
    yield host
    client.close()
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def docker_host(docker_engine: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCKER_HOST", docker_engine)
    return docker_engine
