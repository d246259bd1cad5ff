"""``make bench-flows``: what tasks and shipped logs cost a flow, against a real embedded server on 127.0.0.1.

1. Task overhead: N trivial tasks called in a flow whose task runs are reported to the server
   (as the runner does), against the same function called N times plainly; and how long after the
   flow ends the last task run is listed by the API.
2. Log shipping: M printed lines with shipping on (as the runner captures them) against shipping
   off; and how long after the last print the API serves the last line.

Prints a markdown table; ``--update-docs`` writes it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.systems import REPO, PushpoolServer

DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- flow-overhead:begin -->", "<!-- flow-overhead:end -->"


def make_run(server: PushpoolServer) -> tuple[str, httpx.Client]:
    """A flow run that stays SCHEDULED (its pool is paused): the benchmark plays its runner."""
    client = httpx.Client(base_url=f"{server.url}/api/workspaces/default",
                          headers={"Authorization": f"Bearer {server.key}"}, timeout=60)
    if client.get("/work_pools/bench").status_code == 404:
        client.post("/work_pools", json={"name": "bench", "type": "local:push", "paused": True}).raise_for_status()
        client.post("/deployments", json={"flow_name": "bench", "name": "flows", "entrypoint": "f.py:f",
                                          "work_pool_name": "bench"}).raise_for_status()
    deployment = client.get("/deployments/name/bench/flows").json()
    run = client.post(f"/deployments/{deployment['id']}/runs", json={})
    run.raise_for_status()
    return run.json()["id"], client


def pushpool_client(server: PushpoolServer):
    from pushpool.client import PushpoolClient

    return PushpoolClient(server.url, server.key, workspace="default", retries=2)


def task_overhead(server: PushpoolServer, count: int) -> dict[str, float]:
    from pushpool import flow, task
    from pushpool.context import FlowRunContext
    from pushpool.reporting import TaskRunReporter

    def work(i: int) -> int:
        return i * 2

    started = time.perf_counter()
    for i in range(count):
        work(i)
    plain = time.perf_counter() - started

    as_task = task(work)

    @flow
    def many() -> None:
        for i in range(count):
            as_task(i)

    run_id, http = make_run(server)
    shipper = pushpool_client(server)
    path = shipper.ws(f"/flow_runs/{run_id}/task_runs")
    reporter = TaskRunReporter(lambda batch: shipper.request("POST", path, json={"task_runs": batch}))
    started = time.perf_counter()
    with many.run_context(FlowRunContext(flow_run_id=run_id, recorder=reporter)):
        many.fn()
    in_flow = time.perf_counter() - started
    ended = time.perf_counter()
    reporter.close()
    listed, after = 0, None
    while listed < count:
        page = http.get(f"/flow_runs/{run_id}/task_runs", params={"limit": 1000, **({"after": after} if after
                                                                                     else {})}).json()
        if not page:
            break
        listed += len(page)
        after = page[-1]["id"]
    visible = time.perf_counter() - ended
    shipper.close()
    return {"plain_s": plain, "flow_s": in_flow, "per_task_us": (in_flow - plain) / count * 1e6,
            "listed": listed, "visible_s": visible, "requests": reporter.requests}


def log_shipping(server: PushpoolServer, lines: int) -> dict[str, float]:
    from pushpool.reporting import LogShipper
    from pushpool.run_logging import shipping_logs

    def printing(ship: Any = None) -> float:
        # The container's log, standing in: runs have PYTHONUNBUFFERED=1, so every write reaches the file.
        with tempfile.TemporaryFile() as raw:
            sink = io.TextIOWrapper(raw, write_through=True)
            with contextlib.redirect_stdout(sink), shipping_logs(ship) if ship else contextlib.nullcontext():
                started = time.perf_counter()
                for i in range(lines):
                    print(f"line {i} of the benchmark")
                return time.perf_counter() - started

    off = printing()
    run_id, http = make_run(server)
    shipper_client = pushpool_client(server)
    path = shipper_client.ws(f"/flow_runs/{run_id}/logs")
    shipper = LogShipper(lambda seq, batch: shipper_client.request("POST", path, json={"seq": seq, "lines": batch}))
    on = printing(shipper.emit)
    last_print = time.perf_counter()
    last = f"line {lines - 1} of the benchmark"
    while True:
        tail = http.get(f"/flow_runs/{run_id}/logs", params={"tail": 1}).json()["lines"]
        if tail and tail[-1] == last:
            break
        if time.perf_counter() - last_print > 60:
            raise RuntimeError("the last line never arrived")
        time.sleep(0.01)
    arrived = time.perf_counter() - last_print
    shipper.close()
    shipper_client.close()
    return {"off_s": off, "on_s": on, "slower_pct": (on / off - 1) * 100, "arrived_s": arrived,
            "requests": shipper.requests}


def table(tasks: dict[str, Any], logs: dict[str, Any], count: int, lines: int) -> str:
    return "\n".join([
        "| measure | figure | target |",
        "|---|---|---|",
        f"| {count:,} trivial tasks in a flow, task runs reported | {tasks['flow_s']:.3f} s "
        f"(plain calls {tasks['plain_s'] * 1000:.1f} ms) | ≤ 2× plain + 1 ms per task |",
        f"| overhead per task | {tasks['per_task_us']:.0f} µs | ≤ 1,000 µs |",
        f"| all {tasks['listed']:,} task runs listed by the API, after the flow | {tasks['visible_s']:.2f} s "
        f"({tasks['requests']} requests) | |",
        f"| {lines:,} printed lines, shipping on vs off | {logs['on_s']:.3f} s vs {logs['off_s']:.3f} s "
        f"(+{logs['slower_pct']:.0f} %) | ≤ +10 % of the flow |",
        f"| last line served by the API, after the last print | {logs['arrived_s']:.2f} s "
        f"({logs['requests']} requests) | ≤ 2 s |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    server = PushpoolServer()
    try:
        tasks = task_overhead(server, args.tasks)
        logs = log_shipping(server, args.lines)
    finally:
        server.stop()
    result = table(tasks, logs, args.tasks, args.lines)
    print(result)
    if args.update_docs:
        text = DOC.read_text()
        block = f"{BEGIN}\n{result}\n{END}"
        text = re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", block, text, flags=re.S) if BEGIN in text else (
            text.rstrip() + "\n\n## Tasks and logs inside a flow\n\n`make bench-flows` (tests/benchmarks/"
            "flow_overhead.py), on this machine against an embedded server on 127.0.0.1:\n\n" + block + "\n")
        Path(DOC).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
