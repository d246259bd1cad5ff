"""`pushpool server bootstrap`: the first workspace and owner key, printed once, for replicas and containers whose
profiles do not outlive them; a second call creates nothing. `server start` with PUSHPOOL_BOOTSTRAP=false makes
no key, and with PUSHPOOL_TICK_TOKEN a cron call of POST /api/tick runs a pass of its ticker."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.fakes.net import free_port
from tests.sdk.cli.conftest import Cli

TOKEN = "f" * 48


def test_bootstrap_prints_the_key_once_and_it_works(tmp_path):
    cli = Cli(home=tmp_path / "home", cwd=tmp_path)
    issued = cli.json("server", "bootstrap")
    assert issued["created"] is True and issued["workspace"] == "default" and issued["key"].startswith("pp")
    assert cli.json("server", "bootstrap") == {"created": False}
    assert "already has a workspace" in cli.ok("server", "bootstrap")
    assert not (tmp_path / "home" / "profiles.toml").exists()  # printed, not saved: the caller keeps it

    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "pushpool.cli.main", "server", "start"],
                              env=cli.env(PUSHPOOL_PORT=str(port), PUSHPOOL_BOOTSTRAP="false",
                                          PUSHPOOL_TICK_TOKEN=TOKEN, PUSHPOOL_TICK_INTERVAL_SECONDS="3600",
                                          PUSHPOOL_SCHEDULER_INTERVAL_SECONDS="3600"),
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api}/api/health", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {issued['key']}"}
        ws = f"{api}/api/workspaces/default"
        assert httpx.post(f"{ws}/work_pools", headers=headers, json={"name": "p", "type": "local:push"}).is_success
        deployment = httpx.post(f"{ws}/deployments", headers=headers, json={
            "flow_name": "f", "name": "d", "entrypoint": "flows.py:f", "work_pool_name": "p"}).json()
        run = httpx.post(f"{ws}/deployments/{deployment['id']}/runs", headers=headers, json={}).json()
        time.sleep(1.5)
        # the server's own loop waits an hour: the run is due, and only the cron call's pass dispatches it
        assert httpx.get(f"{ws}/flow_runs/{run['id']}", headers=headers).json()["state"]["type"] == "SCHEDULED"
        assert httpx.post(f"{api}/api/tick", headers=headers).status_code == 401  # a tenant's key is not the token
        ticked = httpx.post(f"{api}/api/tick", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert ticked.status_code == 200 and ticked.json()["skipped"] is False, ticked.text
        assert ticked.json()["dispatched"] == 1
        assert httpx.get(f"{ws}/flow_runs/{run['id']}", headers=headers).json()["state"]["type"] != "SCHEDULED"
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert not (tmp_path / "home" / "profiles.toml").exists()
    assert "PUSHPOOL_BOOTSTRAP is off" not in (tmp_path / "server.log").read_text()  # the store had a workspace
