"""``make bench-flows``: what tasks and shipped logs cost a flow, against a real embedded server on 127.0.0.1.

1. Task overhead: N trivial tasks called in a flow whose task runs are reported to the server
   (as the runner does), against the same function called N times plainly; and how long after the
   flow ends the last task run is listed by the API.
2. Log shipping: M printed lines in a process of their own whose stdout is a pipe to another
   process (as a container's is), with shipping on (the runner's log relay, on the flow's CPU)
   against shipping off;
   and how long after the last print the API serves the last line.

Prints a markdown table; ``--update-docs`` writes it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.systems import REPO, PushpoolServer, write_doc_block


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


def printing_child(lines: int, result: str, url: str | None, key: str | None, run_id: str | None) -> None:
    """In a process of its own, as a runner is: print ``lines`` lines (shipping them through the log relay, as the
    runner does, when ``url`` is given), then write how long the prints took and when the last one was made."""
    from pushpool.log_relay import LogRelay, RelayTarget
    from pushpool.run_logging import RelayedLogs, shipping_logs

    relay = LogRelay.start() if url else None
    with shipping_logs(RelayedLogs(relay, RelayTarget(url or "", key or "", "default", run_id or ""))) \
            if relay else contextlib.nullcontext():
        started = time.perf_counter()
        for i in range(lines):
            print(f"line {i} of the benchmark")
        elapsed, last_print = time.perf_counter() - started, time.time()
    Path(result).write_text(json.dumps({"elapsed": elapsed, "last_print": last_print}))
    if relay is not None:
        print(json.dumps({"requests": relay.summary.get("requests")}), file=sys.stderr)


def run_printing_child(lines: int, server: PushpoolServer | None = None,
                       run_id: str | None = None) -> tuple[subprocess.Popen, Path, subprocess.Popen, Any]:
    # (the child, its result file, its log reader, the log file)
    """The child, its stdout a pipe read by another process (``cat`` into a file: the container runtime's
    log reader, standing in), with ``PYTHONUNBUFFERED=1`` as in every run's image."""
    workdir = Path(tempfile.mkdtemp(prefix="pushpool-bench-logs-"))
    log = (workdir / "container.log").open("wb")
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=log, preexec_fn=off_flow_cpu)
    args = [sys.executable, "-m", "tests.benchmarks.flow_overhead", "--print-child", str(lines),
            str(workdir / "result.json")]
    if server is not None:
        args += [server.url, server.key, run_id or ""]
    child = subprocess.Popen(args, cwd=REPO, stdout=reader.stdin, stderr=subprocess.PIPE, preexec_fn=on_flow_cpu,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reader.stdin.close()
    return child, workdir / "result.json", reader, log


def finish(child: subprocess.Popen, result: Path, reader: subprocess.Popen, log: Any) -> tuple[dict, str]:
    """Wait for the child (and its log reader); what it wrote about itself and its stderr; clean up."""
    _, err = child.communicate(timeout=120)
    reader.wait(timeout=60)
    log.close()
    try:
        if child.returncode:
            raise RuntimeError(f"the printing child failed: {err.decode()[-2000:]}")
        return json.loads(result.read_text()), err.decode()
    finally:
        shutil.rmtree(result.parent, ignore_errors=True)


#: The CPUs this benchmark may use, read once: the flow gets the last, everything else the rest.
CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
FLOW_CPU = max(CPUS) if CPUS else None


def on_flow_cpu() -> None:
    """The flow on the last CPU; its log reader (:func:`off_flow_cpu`) and the server on the others."""
    with contextlib.suppress(AttributeError, OSError, TypeError):
        os.sched_setaffinity(0, {FLOW_CPU})


def off_flow_cpu(pid: int = 0) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, CPUS - {FLOW_CPU} or CPUS)


def server_on_other_cpus(server: PushpoolServer) -> bool:
    """A real control plane runs on another machine than the flow: here, on the other CPUs (every thread)."""
    if len(CPUS) < 2:
        return False
    try:
        for task in Path(f"/proc/{server.process.pid}/task").iterdir():
            off_flow_cpu(int(task.name))
        return True
    except OSError:
        return False


def log_shipping(server: PushpoolServer, lines: int, repeats: int = 9) -> dict[str, float]:
    """Median of ``repeats`` for each, alternating: prints alone, and prints shipped with the time from the last
    print until the API serves it. The flow has a CPU to itself, the server the others (as the flow's container
    and the control plane are different machines); on one CPU they share it. This driver, which polls the API for
    the last line while a shipping flow runs (another machine's point of view), stays off the flow's CPU too:
    on it, its polling counted against shipping."""
    separate = server_on_other_cpus(server)
    off_flow_cpu()
    try:
        return _log_shipping(lines, repeats, server, separate)
    finally:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, CPUS)


def _log_shipping(lines: int, repeats: int, server: PushpoolServer, separate: bool) -> dict[str, float]:
    off, on, arrivals, requests = [], [], [], 0
    last = f"line {lines - 1} of the benchmark"
    for _ in range(repeats):
        off.append(finish(*run_printing_child(lines))[0]["elapsed"])

        run_id, http = make_run(server)
        child, result, reader, log = run_printing_child(lines, server, run_id)
        deadline = time.monotonic() + 120
        while True:
            tail = http.get(f"/flow_runs/{run_id}/logs", params={"tail": 1}).json()["lines"]
            if tail and tail[-1] == last:
                seen = time.time()
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the last line never arrived")
            time.sleep(0.01)
        done, err = finish(child, result, reader, log)
        on.append(done["elapsed"])
        arrivals.append(seen - done["last_print"])
        requests = json.loads(err.strip().splitlines()[-1])["requests"]
        http.close()
    print(f"log shipping, seconds: off {sorted(round(x, 3) for x in off)}, on {sorted(round(x, 3) for x in on)}",
          file=sys.stderr)
    off_s, on_s = statistics.median(off), statistics.median(on)
    return {"off_s": off_s, "on_s": on_s, "slower_pct": (on_s / off_s - 1) * 100,
            "arrived_s": statistics.median(arrivals), "requests": requests, "separate": separate}


def table(tasks: dict[str, Any], logs: dict[str, Any], count: int, lines: int) -> str:
    cpus = "; flow and server on separate CPUs" if logs["separate"] else "; flow and server on one CPU"
    return "\n".join([
        "| measure | figure | target |",
        "|---|---|---|",
        f"| {count:,} trivial tasks in a flow, task runs reported | {tasks['flow_s']:.3f} s "
        f"(plain calls {tasks['plain_s'] * 1000:.1f} ms) | ≤ 2× plain + 1 ms per task |",
        f"| overhead per task | {tasks['per_task_us']:.0f} µs | ≤ 1,000 µs |",
        f"| all {tasks['listed']:,} task runs listed by the API, after the flow | {tasks['visible_s']:.2f} s "
        f"({tasks['requests']} requests) | |",
        f"| {lines:,} printed lines, shipping on vs off (medians of 9{cpus}) | "
        f"{logs['on_s']:.3f} s vs {logs['off_s']:.3f} s "
        f"({logs['slower_pct']:+.0f} %) | ≤ +10 % of the flow |",
        f"| last line served by the API, after the last print (median of 9) | {logs['arrived_s']:.2f} s "
        f"({logs['requests']} requests) | ≤ 2 s |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--print-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.print_child:
        lines, result, *server = args.print_child
        printing_child(int(lines), result, *(server or [None, None, None]))
        return 0
    server = PushpoolServer()
    try:
        tasks = task_overhead(server, args.tasks)
        logs = log_shipping(server, args.lines)
    finally:
        server.stop()
    result = table(tasks, logs, args.tasks, args.lines)
    print(result)
    if args.update_docs:
        write_doc_block("flow-overhead", result, "Tasks and logs inside a flow", "`make bench-flows` (tests/"
                        "benchmarks/flow_overhead.py), on this machine against an embedded server on 127.0.0.1:")
    return 0


if __name__ == "__main__":
    sys.exit(main())
