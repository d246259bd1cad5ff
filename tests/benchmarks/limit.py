"""``make bench-limit`` (also in ``make bench``): pushpool beside the limit of its stack, in the same run.

The reference (tests/benchmarks/reference_app.py) is FastAPI on the same uvicorn with the same options and
SQLite opened as pushpool opens it, doing per request only what any such API must: look the key up, parse
the body, write a run-sized row (and a history row). Both servers get the same client harness
(tests/benchmarks/workloads.py), a fresh database, and are interleaved ``--rounds`` times; the table has
the median of each figure and pushpool's share of the reference's.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from tests.benchmarks.systems import PushpoolApi, PushpoolServer, ReferenceApi, ReferenceServer, write_doc_block
from tests.benchmarks.workloads import Throughput, lifecycle, run_creation

SYSTEMS = {"pushpool": (PushpoolServer, PushpoolApi), "reference": (ReferenceServer, ReferenceApi)}


def one_round(name: str, runs: int, cap: float) -> dict[str, Throughput]:
    server_class, api_class = SYSTEMS[name]
    server = server_class()
    try:
        api = api_class(server)
        with api.client() as client:
            api.create_pool(client, "limit", paused=True)
            deployment = api.create_deployment(client, "limit", "limit")
        return {"sequential": run_creation(api, deployment, total=runs, clients=1, cap_seconds=cap),
                "concurrent": run_creation(api, deployment, total=runs, clients=16, cap_seconds=cap),
                "lifecycle": lifecycle(api, deployment, total=runs // 2, clients=1, cap_seconds=cap)}
    finally:
        server.stop()


def measure(rounds: int, runs: int, cap: float) -> dict[str, list[dict[str, Throughput]]]:
    results: dict[str, list[dict[str, Throughput]]] = {name: [] for name in SYSTEMS}
    for round_ in range(rounds):
        for name in (("pushpool", "reference") if round_ % 2 == 0 else ("reference", "pushpool")):
            results[name].append(one_round(name, runs, cap))
            got = results[name][-1]
            figures = [f"{k} {t.rate:.0f}/s p99 {t.percentile(0.99):.1f} ms"
                       + (f" {t.errors} errors {t.error_samples}" if t.errors else "") for k, t in got.items()]
            print(f"round {round_ + 1} {name}: " + ", ".join(figures), file=sys.stderr)
    return results


def median(results: list[dict[str, Throughput]], key: str, what: str) -> float:
    values = [r[key].rate if what == "rate" else r[key].percentile(0.99) for r in results]
    return statistics.median(values)


def table(results: dict[str, list[dict[str, Throughput]]], runs: int) -> str:
    ours, ref = results["pushpool"], results["reference"]
    errors = sum(r[k].errors for r in ours for k in r)
    rows = ["| measure | pushpool | the limit (reference) | share |", "|---|---:|---:|---:|"]
    for key, title in (("sequential", f"run creation, 1 client ({runs} runs)"),
                       ("concurrent", f"run creation, 16 clients ({runs} runs)"),
                       ("lifecycle", f"lifecycle create→PENDING→RUNNING→COMPLETED ({runs // 2})")):
        a, b = median(ours, key, "rate"), median(ref, key, "rate")
        rows.append(f"| {title}: per s | {a:.0f} | {b:.0f} | {a / b:.0%} |")
    a, b = median(ours, "concurrent", "p99"), median(ref, "concurrent", "p99")
    rows.append(f"| run creation, 16 clients: p99 (share: the reference's ÷ pushpool's) | {a:.1f} ms | {b:.1f} ms "
                f"| {b / a:.0%} |")
    rows.append(f"| errors (pushpool, every round) | {errors} | | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    result = table(measure(args.rounds, args.runs, args.cap), args.runs)
    print(result)
    if args.update_docs:
        write_doc_block("limit", result, "The limit of the stack", "`make bench-limit` (tests/benchmarks/limit.py): "
                        "pushpool and a reference app on the same FastAPI, uvicorn and SQLite, interleaved, "
                        "medians:")
    return 0


if __name__ == "__main__":
    sys.exit(main())
