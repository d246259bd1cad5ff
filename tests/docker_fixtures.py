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


def _debian_mirror() -> str:
    """The Debian mirror apt uses here (the only package source the tests may reach)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(":", 1)[1].strip()
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="session")
def debian_python_base(docker_engine: str, oci_registries: dict[str, str], tmp_path_factory) -> str:
    """A ``python:3.11-slim`` stand-in in the open test registry (there is no Docker Hub here): Debian bookworm's
    minimal system with its python3 (3.11.2), made by debootstrap from apt's mirror and imported by dockerd,
    declaring ``PYTHON_VERSION`` as the official images do."""
    binary = shutil.which("debootstrap") or (apt_install("debootstrap") and shutil.which("debootstrap"))
    if not binary:
        pytest.skip("debootstrap is not installed and apt-get cannot install it here")
    root = tmp_path_factory.mktemp("debian-root")
    made = subprocess.run([binary, "--variant=minbase", "--include=python3,ca-certificates", "bookworm", str(root),
                           _debian_mirror()], capture_output=True, text=True, timeout=1200)
    if made.returncode != 0:
        pytest.skip(f"debootstrap failed here: {(made.stderr or made.stdout).strip().splitlines()[-1:]}")
    reference = f"{oci_registries['open']}/library/python:3.11-slim"
    env = {"DOCKER_HOST": docker_engine, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-c", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-c",
                    "ENV PYTHON_VERSION=3.11.2", "-c", "ENV LANG=C.UTF-8", "-c", 'CMD ["python3"]', "-", reference],
                   stdin=tar.stdout, check=True, capture_output=True, env=env, timeout=600)
    tar.wait(60)
    subprocess.run(["docker", "push", reference], check=True, capture_output=True, env=env, timeout=600)
    shutil.rmtree(root, ignore_errors=True)
    return reference
