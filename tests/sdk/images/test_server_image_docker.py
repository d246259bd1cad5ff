"""The control plane's image under a real Docker engine (runc), on a Debian base with its own python3: the server
starts as the image's unprivileged user, serves the API on $PORT against a real PostgreSQL, and the same image
run as a one-off job (`server bootstrap`) makes the first owner key. Slow: debootstrap makes the base first."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
from cryptography.fernet import Fernet

from pushpool.images.server_image import build_server_image
from tests.fakes.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
pytest.importorskip("psycopg")


def _docker(docker_engine: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env={"DOCKER_HOST": docker_engine, "PATH": "/usr/local/bin:/usr/bin:/bin"})


def test_the_image_runs_under_docker_against_postgresql(docker_engine, debian_python_base, oci_registries,
                                                        postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_LAYER_CACHE", str(tmp_path / "layers"))
    report = build_server_image(f"{oci_registries['open']}/pushpool/server", base_image=debian_python_base,
                                quiet=True)
    port = free_port()
    settings = ["-e", f"PUSHPOOL_ENCRYPTION_KEY={Fernet.generate_key().decode()}", "-e", "PUSHPOOL_STORE=postgresql",
                "-e", f"PUSHPOOL_DATABASE_URL={postgres_url}"]
    job = _docker(docker_engine, "run", "--rm", "--network", "host", *settings, report.reference,
                  "server", "bootstrap", "-o", "json")
    assert job.returncode == 0, job.stderr
    key = json.loads(job.stdout)["key"]

    name = f"pushpool-server-{port}"
    started = _docker(docker_engine, "run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
                      "-e", "PUSHPOOL_HOST=127.0.0.1", *settings, report.reference)
    assert started.returncode == 0, started.stderr
    try:
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{api}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, _docker(docker_engine, "logs", name).stderr[-2000:]
            time.sleep(0.5)
        made = httpx.post(f"{api}/api/workspaces/default/work_pools", json={"name": "p", "type": "local:push"},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert made.status_code == 201, made.text
        user = _docker(docker_engine, "exec", name, "python3", "-c", "import os; print(os.getuid())")
        assert user.stdout.strip() == "65532"
    finally:
        _docker(docker_engine, "rm", "-f", name)
