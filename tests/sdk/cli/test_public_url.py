"""A cloud pool on a server whose public URL is loopback: its runs could never report back. Said at server
start, pool creation and inspection (on stderr, so JSON output stays clean), with the fix."""

from __future__ import annotations

import json

from pushpool.control_plane.settings import is_loopback_url


def test_cloud_pools_on_a_loopback_server_get_a_warning_with_the_fix(server):
    created = server.run("work-pool", "create", "cloudy", "--type", "modal:push")
    assert created.returncode == 0, created.stderr
    assert "PUSHPOOL_PUBLIC_API_URL" in created.stderr and "http://127.0.0.1:" in created.stderr
    inspected = server.run("work-pool", "inspect", "cloudy", "--output", "json")
    assert json.loads(inspected.stdout)["type"] == "modal:push" and "PUSHPOOL_PUBLIC_API_URL" in inspected.stderr
    local = server.run("work-pool", "create", "here", "--type", "local:push")
    assert local.returncode == 0 and "PUSHPOOL_PUBLIC_API_URL" not in local.stderr  # runs on this machine
    started = (server.cwd / "server.log").read_text()
    assert "Note: runs on cloud pools report back to http://127.0.0.1:" in started


def test_what_counts_as_loopback():
    for url in ("http://127.0.0.1:4200", "http://localhost:4200", "http://[::1]:4200", "http://0.0.0.0:4200",
                "http://127.5.0.1"):
        assert is_loopback_url(url), url
    for url in ("https://pushpool.example.com", "http://10.0.0.5:4200", "https://abc.trycloudflare.com"):
        assert not is_loopback_url(url), url
