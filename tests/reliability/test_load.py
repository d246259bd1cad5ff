"""Load: concurrent API clients mixing reads and writes against a real server on 127.0.0.1.

No server errors, nothing lost (every run a client was told it created exists), and
the latency distribution is printed. Bounded in count and time: 16 clients for 8 s by
default; ``make test-slow`` runs 100 clients for 60 s (PUSHPOOL_LOAD_CLIENTS/SECONDS).
"""

from __future__ import annotations

import os
import random
import threading
import time

import httpx
import pytest

CLIENTS = int(os.environ.get("PUSHPOOL_LOAD_CLIENTS", "16"))
SECONDS = float(os.environ.get("PUSHPOOL_LOAD_SECONDS", "8"))


@pytest.mark.timeout(SECONDS * 4 + 120)
def test_concurrent_clients_get_no_server_errors_and_lose_nothing(live):
    client = live.client()
    client.create_work_pool("load", "local:push", paused=True)  # runs are created, not started
    dep = client.apply_deployment(flow_name="load", name="d", entrypoint="f.py:f", work_pool_name="load")
    base = f"{live.settings.api_url}/api/workspaces/{live.workspace}"
    headers = {"Authorization": f"Bearer {live.key}"}
    created: list[str] = []
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + SECONDS

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            while time.monotonic() < stop_at:
                roll = rng.random()
                started = time.perf_counter()
                if roll < 0.4:
                    response = http.post(f"/deployments/{dep['id']}/runs", json={"parameters": {}})
                elif roll < 0.5 and created:
                    response = http.post(f"/flow_runs/{rng.choice(created)}/cancel")
                elif roll < 0.8:
                    response = http.get("/flow_runs", params={"limit": 50})
                else:
                    response = http.get(f"/deployments/{dep['id']}")
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code >= 500:
                        failures.append(f"{response.request.method} {response.request.url}: {response.status_code}")
                    elif response.request.method == "POST" and response.url.path.endswith("/runs"):
                        if response.status_code == 201:
                            created.append(response.json()["id"])
                        else:
                            failures.append(f"create run: {response.status_code} {response.text}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(f"\nload: {CLIENTS} clients, {SECONDS:g}s, {len(latencies)} requests "
          f"({len(latencies) / SECONDS:.0f}/s), p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms, runs created {len(created)}")
    assert failures == []
    stored = {r["id"] for r in client.list_flow_runs(deployment_id=dep["id"], limit=1000, offset=0)}
    offset = 1000
    while len(stored) < len(created):
        page = client.list_flow_runs(deployment_id=dep["id"], limit=1000, offset=offset)
        if not page:
            break
        stored |= {r["id"] for r in page}
        offset += 1000
    assert set(created) <= stored and len(stored) == len(created)
