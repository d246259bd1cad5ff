"""A real OCI registry on 127.0.0.1: Debian's ``docker-registry`` (installed by the test set-up with apt
when missing), one per test session, with an htpasswd-protected twin for the auth tests.

Registered as fixtures by tests/conftest.py. Skips, saying why, only when it cannot be installed."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.net import free_port

USER, PASSWORD = "pusher", "s3cret-pw"


def apt_install(package: str) -> bool:
    """Install a Debian package (updating the package lists once if it is not found); True when it worked."""
    if shutil.which("apt-get") is None:
        return False
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(install, capture_output=True, timeout=900, env=env).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env)  # no package lists yet
    return subprocess.run(install, capture_output=True, timeout=900, env=env).returncode == 0


def _binary() -> str | None:
    return shutil.which("docker-registry") or (apt_install("docker-registry") and shutil.which("docker-registry"))


def _htpasswd(path: Path) -> None:
    import bcrypt

    path.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")


def _start(binary: str, root: Path, auth: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = [
        "version: 0.1", "log:", "  level: error", "storage:", "  filesystem:", f"    rootdirectory: {root}/data",
        "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{port}",
    ]
    if auth:
        _htpasswd(root / "htpasswd")
        config += ["auth:", "  htpasswd:", "    realm: pushpool-test", f"    path: {root}/htpasswd"]
    (root / "config.yml").write_text("\n".join(config) + "\n")
    process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}/v2/", timeout=1).status_code in (200, 401):
                return process, host
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("docker-registry did not start")


@pytest.fixture(scope="session")
def oci_registries(tmp_path_factory) -> Any:
    binary = _binary()
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed and apt-get cannot install it here")
    root = tmp_path_factory.mktemp("registry")
    open_registry, open_host = _start(binary, root / "open", auth=False)
    locked_registry, locked_host = _start(binary, root / "locked", auth=True)
    yield {"open": open_host, "locked": locked_host}
    for process in (open_registry, locked_registry):
        process.terminate()
        process.wait(10)
