"""``make bench``: every workload against pushpool and Prefect on this machine, in one run; prints one
markdown table (and, with ``--update-docs``, writes it into docs/benchmarks.md).

Workloads (see docs/benchmarks.md): 1 run creation, 2 run lifecycle, 3 scheduling, 4 dispatch
lateness, 5 on-time start with slow infrastructure, 6 Lambda cold start, 7 server memory.
``--quick`` runs every workload at a tenth of its size (a smoke test of the harness, not figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.benchmarks import prefect_workers
from tests.benchmarks.lambda_cold_start import cold_start_ms, import_time_ms
from tests.benchmarks.systems import (
    REPO,
    PeakRss,
    PrefectApi,
    PrefectServer,
    PushpoolApi,
    PushpoolServer,
    ensure_prefect,
    prefect_version,
)
from tests.benchmarks.workloads import (
    Lateness,
    Throughput,
    create_due_runs,
    due_at,
    lifecycle,
    run_creation,
    scheduling,
)

Row = tuple[str, str, str, str, str]
OFFSET = " (p99 of the offset, early or late)"  # measure, pushpool, Prefect, Prefect --no-services, ratio


class Sizes:
    def __init__(self, quick: bool) -> None:
        scale = 10 if quick else 1
        self.runs = 2000 // scale
        self.lifecycles = 2000 // scale  # the same for both systems; Prefect reaches the 90 s cap first
        self.deployments = 1000 // scale
        self.due_runs = 1000 // scale
        self.prefect_due_runs = 100 // scale
        self.slow_runs = 10 // (2 if quick else 1)
        self.cap = 90.0 / (3 if quick else 1)
        self.schedule_cap = 600.0 / (3 if quick else 1)


def ratio(ours: float, theirs: float, higher_is_better: bool = True) -> str:
    if not ours or not theirs or ours != ours or theirs != theirs:
        return "-"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.1f}×"


def fmt_rate(t: Throughput, unit: str) -> str:
    text = f"{t.rate:.0f} {unit}" if t.rate >= 10 else f"{t.rate:.1f} {unit}"
    return text + (f" ({t.done} in the {t.seconds:.0f} s cap)" if t.capped else "")


# --------------------------------------------------------------------------- throughput (1, 2, 7)


def throughput(api: Any, server: Any, sizes: Sizes, *, pool: str | None) -> dict[str, Any]:
    with api.client() as client:
        if pool:
            api.create_pool(client, pool, paused=True)  # runs stay SCHEDULED, as on a Prefect server with no worker
        deployment = api.create_deployment(client, "throughput", pool)
    with PeakRss(server.process.pid) as rss:
        sequential = run_creation(api, deployment, total=sizes.runs, clients=1, cap_seconds=sizes.cap)
        concurrent = run_creation(api, deployment, total=sizes.runs, clients=16, cap_seconds=sizes.cap)
    cycles = lifecycle(api, deployment, total=sizes.lifecycles, clients=1, cap_seconds=sizes.cap)
    return {"sequential": sequential, "concurrent": concurrent, "lifecycle": cycles, "rss": rss.peak}


def throughput_rows(results: dict[str, dict[str, Any]], sizes: Sizes) -> list[Row]:
    p, s, n = results["pushpool"], results["prefect"], results["prefect_no_services"]
    rows: list[Row] = []
    for key, title in (("sequential", "sequential"), ("concurrent", "16 clients")):
        a, b, c = p[key], s[key], n[key]
        rows.append((f"1. run creation, {title} ({sizes.runs} runs): runs/s", fmt_rate(a, "/s"), fmt_rate(b, "/s"),
                     fmt_rate(c, "/s"), f"{ratio(a.rate, b.rate)} / {ratio(a.rate, c.rate)}"))
        rows.append((f"1. run creation, {title}: p50 / p99 latency",
                     *(f"{t.percentile(0.5):.1f} / {t.percentile(0.99):.1f} ms" for t in (a, b, c)),
                     f"{ratio(a.percentile(0.99), b.percentile(0.99), False)} / "
                     f"{ratio(a.percentile(0.99), c.percentile(0.99), False)} (p99)"))
        rows.append((f"1. run creation, {title}: errors", *(_errors(t) for t in (a, b, c)), ""))
    a, b, c = p["lifecycle"], s["lifecycle"], n["lifecycle"]
    rows.append((f"2. lifecycle create→PENDING→RUNNING→COMPLETED ({sizes.lifecycles}): per s",
                 fmt_rate(a, "/s"), fmt_rate(b, "/s"), fmt_rate(c, "/s"),
                 f"{ratio(a.rate, b.rate)} / {ratio(a.rate, c.rate)}"))
    rows.append(("7. server peak RSS during workload 1", *(f"{r['rss'] / 2**20:.0f} MB" for r in (p, s, n)),
                 f"{ratio(p['rss'], s['rss'], False)} / {ratio(p['rss'], n['rss'], False)} less"))
    return rows


def _errors(t: Throughput) -> str:
    if not t.errors:
        return "0"
    sample = re.sub(r"\s+", " ", t.error_samples[0])[:70] if t.error_samples else ""
    return f"{t.errors} (e.g. {sample})"


# --------------------------------------------------------------------------- scheduling (3)


def pushpool_scheduling(sizes: Sizes) -> Any:
    server = PushpoolServer(env={"PUSHPOOL_SCHEDULER_HORIZON_SECONDS": "86400", "PUSHPOOL_SCHEDULER_MAX_RUNS": "300"})
    try:
        api = PushpoolApi(server)
        with api.client() as client:
            api.create_pool(client, "sched", paused=True)
        db = server.home / "pushpool.db"

        def count() -> int:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT COUNT(*) FROM flow_runs").fetchone()[0]

        return scheduling(api, lambda tz: {"schedules": [{"cron": "*/5 * * * *", "timezone": tz}]}, count,
                          deployments=sizes.deployments, pool="sched", cap_seconds=sizes.schedule_cap)
    finally:
        server.stop()


def prefect_scheduling(sizes: Sizes) -> Any:
    server = PrefectServer(services=True, env={"PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "300",
                                               "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME": "P1D"})
    try:
        api = PrefectApi(server)

        def count() -> int:
            with api.client() as client:
                return api.count_runs(client)

        return scheduling(api, lambda tz: {"schedules": [
            {"schedule": {"cron": "*/5 * * * *", "timezone": tz}, "active": True}]}, count,
            deployments=sizes.deployments, pool=None, cap_seconds=sizes.schedule_cap)
    finally:
        server.stop()


def scheduling_row(ours: Any, theirs: Any) -> Row:
    def fmt(result: Any) -> str:
        if result.complete:
            return f"{result.seconds:.1f} s"
        return (f"> {result.seconds:.0f} s ({result.created_runs:,} of {result.expected_runs:,} runs; "
                f"{result.deployed} of {result.deployments} deployments created in the cap)")

    return (f"3. scheduling {ours.deployments} deployments × 24 h (*/5, 6 timezones): time until all runs exist",
            fmt(ours), fmt(theirs), "n/a (needs its scheduler service)",
            ratio(ours.seconds, theirs.seconds, False) + ("" if theirs.complete else " at least"))


# --------------------------------------------------------------------------- dispatch lateness (4)


def pushpool_dispatch(sizes: Sizes) -> Lateness:
    record = Path(tempfile.mkdtemp(prefix="pushpool-bench-")) / "submissions.log"
    server = PushpoolServer(record=record)
    try:
        api = PushpoolApi(server)
        with api.client() as client:
            api.create_pool(client, "due", paused=True)
            deployment = api.create_deployment(client, "due", "due")
            at = due_at(15)
            ids = create_due_runs(api, deployment, sizes.due_runs, at)
            client.patch("/work_pools/due", json={"paused": False}).raise_for_status()
        return _wait_for_submissions(record, set(ids), at)
    finally:
        server.stop()


def _wait_for_submissions(record: Path, ids: set[str], at: datetime, timeout: float = 120) -> Lateness:
    import time

    deadline = time.time() + max(0.0, at.timestamp() - time.time()) + timeout
    seen: dict[str, float] = {}
    while time.time() < deadline and len(seen) < len(ids):
        time.sleep(0.5)
        if record.exists():
            for line in record.read_text().splitlines():
                run_id, when = line.split()
                if run_id in ids:
                    seen.setdefault(run_id, float(when) - at.timestamp())
    return Lateness(len(ids), list(seen.values()))


def lateness_cell(result: Lateness) -> str:
    if not result.seen:
        return "none started"
    text = (f"p50 {result.percentile(0.5):+.2f} s, p99 {result.percentile(0.99):+.2f} s, "
            f"max {result.maximum:+.2f} s")
    if len(result.seen) < result.expected:
        text += f" ({len(result.seen)} of {result.expected})"
    return text


# --------------------------------------------------------------------------- main


def measure(sizes: Sizes, say: Callable[[str], None], only: set[str]) -> tuple[list[Row], dict[str, str]]:
    rows: list[Row] = []
    groups: list[tuple[set[str], Callable[[], list[Row]]]] = [
        ({"1", "2", "7"}, lambda: measure_throughput(sizes, say)),
        ({"3"}, lambda: measure_scheduling(sizes, say)),
        ({"4"}, lambda: measure_dispatch(sizes, say)),
        ({"5"}, lambda: measure_slow_start(sizes, say)),
        ({"6"}, lambda: measure_cold_start(say)),
    ]
    for numbers, group in groups:
        if not only & numbers:
            continue
        try:
            new_rows = group()
        except Exception as exc:  # one workload failing must not lose the others' figures
            new_rows = [(f"workloads {','.join(sorted(numbers))}", f"failed: {type(exc).__name__}: {exc}"[:200],
                         "", "", "")]
        for row in new_rows:
            say("| " + " | ".join(row) + " |")
        rows += new_rows
    from pushpool.control_plane.app import VERSION

    facts = {"machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
                        f"Python {platform.python_version()}",
             "versions": f"pushpool {VERSION}, Prefect {prefect_version()}",
             "date": datetime.now().strftime("%Y-%m-%d")}
    return rows, facts


def measure_throughput(sizes: Sizes, say: Callable[[str], None]) -> list[Row]:
    results: dict[str, dict[str, Any]] = {}
    say("pushpool: run creation, lifecycle, memory")
    server = PushpoolServer(record=Path(tempfile.mkdtemp(prefix="pushpool-bench-")) / "submissions.log")
    try:
        results["pushpool"] = throughput(PushpoolApi(server), server, sizes, pool="bench")
    finally:
        server.stop()
    ensure_prefect()
    for key, services in (("prefect", True), ("prefect_no_services", False)):
        say(f"Prefect ({'services on' if services else '--no-services'}): run creation, lifecycle, memory")
        prefect = PrefectServer(services=services)
        try:
            results[key] = throughput(PrefectApi(prefect), prefect, sizes, pool=None)
        finally:
            prefect.stop()
    return throughput_rows(results, sizes)


def measure_scheduling(sizes: Sizes, say: Callable[[str], None]) -> list[Row]:
    say("scheduling: pushpool")
    ours = pushpool_scheduling(sizes)
    say("scheduling: Prefect (scheduler service)")
    return [scheduling_row(ours, prefect_scheduling(sizes))]


def measure_dispatch(sizes: Sizes, say: Callable[[str], None]) -> list[Row]:
    say("dispatch lateness: pushpool")
    ours = pushpool_dispatch(sizes)
    say("dispatch lateness: Prefect process worker")
    theirs = prefect_workers.dispatch_lateness(sizes.prefect_due_runs)
    return [(f"4. dispatch lateness, {sizes.due_runs} runs due at once (Prefect: {sizes.prefect_due_runs}, "
             "process worker, defaults)", lateness_cell(ours), lateness_cell(theirs), "n/a",
             ratio(ours.abs_percentile(0.99), theirs.abs_percentile(0.99), False) + OFFSET)]


def measure_slow_start(sizes: Sizes, say: Callable[[str], None]) -> list[Row]:
    say("on-time start with 60 s infrastructure start: pushpool")
    ours = prefect_workers.pushpool_slow_start(sizes.slow_runs)
    say("on-time start with 60 s infrastructure start: Prefect")
    theirs = prefect_workers.prefect_slow_start(sizes.slow_runs)
    return [(f"5. flow start after scheduled time, infrastructure starting in 60 s ({sizes.slow_runs} runs)",
             lateness_cell(ours), lateness_cell(theirs), "n/a",
             ratio(ours.abs_percentile(0.99), theirs.abs_percentile(0.99), False) + OFFSET)]


def measure_cold_start(say: Callable[[str], None]) -> list[Row]:
    from pushpool.provisioners.lambda_package import build_package

    say("Lambda cold start")
    cumulative, _ = import_time_ms()
    tick, api = cold_start_ms(with_api=False), cold_start_ms(with_api=True)
    package = build_package(Path(tempfile.mkdtemp(prefix="pushpool-bench-")))
    return [("6. Lambda handler import (-X importtime, median of 10)", f"{cumulative:.0f} ms", "n/a", "n/a", ""),
            ("6. Lambda cold start before the first answer: tick / API (with FastAPI app)",
             f"{tick:.0f} / {api:.0f} ms", "n/a", "n/a", ""),
            ("6. Lambda package zipped / unzipped", f"{package.zipped_bytes / 2**20:.1f} / "
             f"{package.unzipped_bytes / 2**20:.1f} MB", "n/a", "n/a", "")]


def render(rows: list[Row], facts: dict[str, str], quick: bool) -> str:
    lines = [f"Machine: {facts['machine']}. Versions: {facts['versions']}. Date: {facts['date']}."
             + (" QUICK RUN (a tenth of the sizes): not figures to quote." if quick else ""), "",
             "| measure | pushpool | Prefect (services on) | Prefect --no-services | ratio (vs on / vs --no-services) "
             "|",
             "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def update_docs(table: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{table}\n{end}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of every size: checks the harness")
    parser.add_argument("--update-docs", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="workloads to run, e.g. 1,4 (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    rows, facts = measure(Sizes(args.quick), lambda text: print(f"… {text}", file=sys.stderr, flush=True), only)
    table = render(rows, facts, args.quick)
    print(table)
    if args.update_docs:
        update_docs(table)


if __name__ == "__main__":
    main()
