"""``make bench-dashboard``: how long each dashboard page takes at scale on the embedded server.

Seeds a real embedded server's SQLite database with 100,000 flow runs (most final, some failed, crashed,
running and scheduled ahead, tagged), 1,000 deployments on 4 pools, 10,000 events and a few automations,
then signs in as a browser does and asks each page 40 times over loopback (after 3 unmeasured requests),
printing p50 and p95 of the time to the whole answer (the server's time plus a loopback round trip).
The target is p95 ≤ 100 ms per page.

Prints a markdown table; ``--update-docs`` writes it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx

from tests.benchmarks.systems import PushpoolServer, write_doc_block

POOLS = 4
REQUESTS, WARM_UP = 40, 3
TARGET_P95_MS = 100.0


def seed(server: PushpoolServer, runs: int, deployments: int, events: int) -> dict[str, str]:
    """Fill the server's database through the store (as years of use would), with its pools paused so
    nothing is dispatched; returns ids the pages are asked about."""
    from pushpool.control_plane.event_models import Automation, Event, EventTrigger, RunDeployment
    from pushpool.control_plane.models import Deployment, FlowRun, State, StateType, WorkPool, WorkQueue
    from pushpool.control_plane.storage.sqlite import SqliteStore
    from pushpool.pushers.base import default_job_template

    store = SqliteStore(server.home / "pushpool.db")
    workspace = store.get_workspace("default")
    now = datetime.now(UTC)
    rng = random.Random(7)
    pools = []
    for i in range(POOLS):
        pool = WorkPool(workspace_id=workspace.id, name=f"pool-{i}", type="local:push", paused=True,
                        concurrency_limit=50, base_job_template=default_job_template("local:push"), created=now,
                        updated=now)
        store.create_work_pool(pool, WorkQueue(workspace_id=workspace.id, pool_id=pool.id, name="default",
                                               created=now))
        pools.append(pool)
    made = []
    for i in range(deployments):
        pool = pools[i % POOLS]
        queue = store.list_work_queues(workspace.id, pool.id)[0]
        made.append(store.create_deployment(Deployment(
            workspace_id=workspace.id, flow_name=f"flow-{i % 50}", name=f"dep-{i}", entrypoint="flows.py:main",
            pool_id=pool.id, queue_id=queue.id, parameter_schema={"type": "object", "properties": {
                "day": {"type": "string"}, "rows": {"type": "integer", "default": 10}}},
            created=now, updated=now)))
    kinds = [StateType.COMPLETED] * 85 + [StateType.FAILED] * 6 + [StateType.CRASHED] * 2 + \
        [StateType.RUNNING] * 2 + [StateType.SCHEDULED] * 5
    batch: list[FlowRun] = []
    for i in range(runs):
        deployment = made[i % deployments]
        kind = rng.choice(kinds)
        # Spread over 30 days back (scheduled runs: the next 3 days).
        at = now + timedelta(minutes=rng.randrange(1, 3 * 1440)) if kind is StateType.SCHEDULED else \
            now - timedelta(minutes=rng.randrange(1, 30 * 1440))
        batch.append(FlowRun(
            workspace_id=workspace.id, deployment_id=deployment.id, flow_name=deployment.flow_name,
            deployment_name=deployment.name, name=f"run-{i}", pool_id=deployment.pool_id,
            queue_id=deployment.queue_id, parameters={"day": at.date().isoformat()},
            tags=["nightly", "eu"] if i % 10 else ["adhoc"], state=State(type=kind, name=kind.value.title(),
                                                                          timestamp=at),
            scheduled_time=at, idempotency_key=f"seed-{i}", created=at, updated=at))
        if len(batch) == 2000:
            store.create_flow_runs_if_absent(batch)
            batch = []
    if batch:
        store.create_flow_runs_if_absent(batch)
    pending = []
    for i in range(events):
        pending.append(Event(workspace_id=workspace.id, occurred=now - timedelta(seconds=i * 30),
                             event="pushpool.flow-run.Completed", received=now,
                             resource={"pushpool.resource.id": f"pushpool.flow-run.seed-{i}",
                                       "pushpool.resource.name": f"run-{i}"}, payload={"i": i}))
        if len(pending) == 1000:
            store.append_events(pending)
            pending = []
    store.append_events(pending)
    for i in range(5):
        store.create_automation(Automation(
            workspace_id=workspace.id, name=f"automation-{i}", created=now, updated=now,
            trigger=EventTrigger(expect=["pushpool.flow-run.Failed"], threshold=3, within=600),
            actions=[RunDeployment(deployment=made[i].id)]))
    some_run = store.list_flow_runs(workspace.id, _filter(deployment_id=made[0].id), limit=1)[0]
    store.close()
    return {"deployment": made[0].id, "run": some_run.id, "pool": pools[0].name, "flow": made[0].flow_name}


def _filter(**fields):
    from pushpool.control_plane.models import FlowRunFilter

    return FlowRunFilter(**fields)


def measure(server: PushpoolServer, ids: dict[str, str]) -> list[tuple[str, float, float]]:
    client = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
    answer = client.post("/sign-in", data={"key": server.key, "next": "/"})
    assert answer.status_code == 303, answer.text
    deep = client.get("/w/default/runs").text
    for _ in range(40):  # 40 pages in: a cursor deep into the list
        found = re.search(r'<a href="\?([^"]+)" rel="next">', deep)
        deep_query = found.group(1).replace("&amp;", "&")
        deep = client.get(f"/w/default/runs?{deep_query}").text
    pages = {
        "overview (24 h)": "/w/default/",
        "overview (7 days)": "/w/default/?window=7d",
        "flow runs": "/w/default/runs",
        "flow runs, failed": "/w/default/runs?state=FAILED",
        "flow runs, one flow": f"/w/default/runs?flow={ids['flow']}",
        "flow runs, rare tag": "/w/default/runs?tag=adhoc",
        "flow runs, page 41": f"/w/default/runs?{deep_query}",
        "flow run": f"/w/default/runs/{ids['run']}",
        "deployments (1,000)": "/w/default/deployments",
        "deployment": f"/w/default/deployments/{ids['deployment']}",
        "work pools": "/w/default/pools",
        "work pool": f"/w/default/pools/{ids['pool']}",
        "automations": "/w/default/automations",
        "events": "/w/default/events",
    }
    rows = []
    for label, path in pages.items():
        times = []
        for i in range(WARM_UP + REQUESTS):
            start = time.perf_counter()
            answer = client.get(path)
            elapsed = (time.perf_counter() - start) * 1000
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
            if i >= WARM_UP:
                times.append(elapsed)
        times.sort()
        rows.append((label, statistics.median(times), times[int(len(times) * 0.95) - 1]))
        print(f"  {label}: p50 {rows[-1][1]:.1f} ms, p95 {rows[-1][2]:.1f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--deployments", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    server = PushpoolServer()
    try:
        started = time.perf_counter()
        ids = seed(server, args.runs, args.deployments, args.events)
        print(f"seeded {args.runs:,} runs, {args.deployments:,} deployments, {args.events:,} events "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        rows = measure(server, ids)
    finally:
        server.stop()
    worst = max(p95 for _, _, p95 in rows)
    lines = [f"Dashboard pages on the embedded server with {args.runs:,} runs, {args.deployments:,} deployments "
             f"and {args.events:,} events ({REQUESTS} requests a page over loopback; target p95 ≤ "
             f"{TARGET_P95_MS:.0f} ms):", "", "| page | p50 ms | p95 ms |", "|---|---:|---:|"]
    lines += [f"| {label} | {p50:.1f} | {p95:.1f} |" for label, p50, p95 in rows]
    lines += ["", f"Slowest p95: {worst:.1f} ms ({'within' if worst <= TARGET_P95_MS else 'over'} the target)."]
    table = "\n".join(lines)
    print(table)
    if args.update_docs:
        write_doc_block("dashboard-pages", table, "Dashboard pages")


if __name__ == "__main__":
    main()
