"""The busiest routes run on the event loop, and in the thread pool when the database is busy."""

from __future__ import annotations

import threading
import time

from pushpool.control_plane.storage.sqlite import SqliteStore


def test_a_run_is_created_and_reported_while_another_process_holds_the_database(api, ctx, monkeypatch):
    import pushpool.control_plane.api.offload as offload

    handed_over: list[str] = []
    real = offload.run_in_threadpool

    async def counting(work, *args):
        handed_over.append(getattr(work, "__name__", "?"))
        return await real(work, *args)

    monkeypatch.setattr(offload, "run_in_threadpool", counting)
    api.pool()
    dep = api.deployment()
    other = SqliteStore(ctx.store.path)  # another process's connection to the same file
    conn = other._conn()
    conn.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: conn.execute("ROLLBACK")).start()
    started = time.monotonic()
    run = api.run(dep["id"])  # its write would wait: handed to the thread pool, done once the lock is free
    assert time.monotonic() - started >= 0.25
    assert handed_over == ["_create_flow_run"]  # the event loop did not wait for the lock
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}"))["id"] == run["id"]
    runs = api.ok("GET", api.ws("/flow_runs"), params={"deployment_id": dep["id"]})
    assert [r["id"] for r in runs] == [run["id"]]  # created exactly once
    state = api.ok("POST", api.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "PENDING"})
    assert state["state"]["type"] == "PENDING"
    assert handed_over == ["_create_flow_run"]  # a free database: the report ran on the event loop
    assert [s["type"] for s in api.ok("GET", api.ws(f"/flow_runs/{run['id']}/states"))] == ["SCHEDULED", "PENDING"]
    other.close()
