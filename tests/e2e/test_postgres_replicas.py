"""Two `pushpool server start --store postgresql://...` processes on one PostgreSQL, as replicas behind a load
balancer: a pool and deployment made through one, a run made through the other, the flow run by whichever
replica's tick claims it, and read back through either. A replica with another encryption key refuses to start;
`pushpool server migrate` finds nothing to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from pushpool.client import PushpoolClient
from tests.fakes.net import free_port
from tests.live_server import wait_for_state

pytest.importorskip("psycopg")
PUSHPOOL = [sys.executable, "-m", "pushpool.cli.main"]


def _env(home: Path, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
    env.update({"PUSHPOOL_HOME": str(home), "PUSHPOOL_ENCRYPTION_KEY": key, "PUSHPOOL_TICK_INTERVAL_SECONDS": "0.2"})
    return env


def _replica(url: str, home: Path, key: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([*PUSHPOOL, "server", "start", "--store", url, "--port", str(port)], env=_env(home, key),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"replica exited: {process.stdout.read()}")
        try:
            if httpx.get(f"{api}/api/health", timeout=1).status_code == 200:
                return process, api
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("replica did not start")


@pytest.mark.timeout(300)
def test_two_server_processes_share_one_postgresql(postgres_url, tmp_path):
    key = Fernet.generate_key().decode()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, first_api = _replica(postgres_url, tmp_path / "a", key)
    second, second_api = _replica(postgres_url, tmp_path / "b", key)
    try:
        profile = tomllib.loads((tmp_path / "a" / "profiles.toml").read_text())
        values = next(iter(profile["profiles"].values())) if "profiles" in profile else next(iter(profile.values()))
        api_key, workspace = values["PUSHPOOL_API_KEY"], values["PUSHPOOL_WORKSPACE"]
        assert not (tmp_path / "b" / "profiles.toml").exists()  # bootstrapped once, by the first replica
        project = tmp_path / "project"
        project.mkdir()
        (project / "flows.py").write_text(textwrap.dedent('''
            from pushpool import flow

            @flow
            def hello(name: str = "world"):
                print(f"hello {name}")
                return name
        '''))
        with PushpoolClient(first_api, api_key, workspace) as one, PushpoolClient(second_api, api_key,
                                                                                 workspace) as two:
            one.create_work_pool("local", "local:push")
            dep = one.apply_deployment(flow_name="hello", name="replicas", entrypoint="flows.py:hello",
                                       work_pool_name="local", job_variables={"working_dir": str(project)},
                                       parameters={"name": "replicas"})
            run = two.create_flow_run(dep["id"])
            done = wait_for_state(one, run["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=90)
            assert done["state"]["type"] == "COMPLETED", done["state"]
            assert two.read_flow_run(run["id"])["state"]["type"] == "COMPLETED"

        (tmp_path / "c").mkdir()
        other_key = subprocess.run([*PUSHPOOL, "server", "start", "--store", postgres_url, "--port", str(free_port())],
                                   env=_env(tmp_path / "c", Fernet.generate_key().decode()), capture_output=True,
                                   text=True, timeout=120)
        assert other_key.returncode != 0 and "same PUSHPOOL_ENCRYPTION_KEY" in other_key.stdout + other_key.stderr

        migrated = subprocess.run([*PUSHPOOL, "server", "migrate", "--store", postgres_url, "-o", "json"],
                                  env=_env(tmp_path / "c", key), capture_output=True, text=True, timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        report = json.loads(migrated.stdout)
        assert report["applied"] == [] and report["schema_version"] >= 1
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=30)
