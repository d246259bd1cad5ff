"""``make bench`` (and ``python -m tests.benchmarks.metrics_overhead``): what measuring costs the API.

Two embedded servers side by side, one with ``PUSHPOOL_METRICS=off`` and one with Prometheus metrics on, each
creating runs from one client (``--requests`` a round, rounds interleaved so both see the same machine); prints
runs/s for each and the slowdown (issue 27's target: at most 5 %). ``--update-docs`` writes the table into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tests.benchmarks.systems import PushpoolApi, PushpoolServer, write_doc_block


def creation_rate(api: PushpoolApi, deployment: str, requests: int) -> float:
    with api.client() as client:
        started = time.perf_counter()
        for _ in range(requests):
            api.create_run(client, deployment).raise_for_status()
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    servers = {"off": PushpoolServer(env={"PUSHPOOL_METRICS": "off"}),
               "on": PushpoolServer(env={"PUSHPOOL_METRICS": "prometheus"})}
    try:
        apis, deployments = {}, {}
        for name, server in servers.items():
            apis[name] = api = PushpoolApi(server)
            with api.client() as client:
                api.create_pool(client, "bench", paused=True)  # runs are created, never dispatched
                deployments[name] = api.create_deployment(client, "flows", "bench")
            creation_rate(api, deployments[name], 100)  # warm up
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            for name in ("off", "on"):
                rates[name].append(creation_rate(apis[name], deployments[name], args.requests))
    finally:
        for server in servers.values():
            server.stop()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    slower = (off / on - 1) * 100
    table = "\n".join([
        "| run creation, 1 client | runs/s (median of rounds) |", "|---|---:|",
        f"| metrics off | {off:.0f} |", f"| metrics on (Prometheus) | {on:.0f} |",
        "", f"Measuring costs {slower:+.1f} % ({args.rounds} interleaved rounds of {args.requests:,} requests; "
            "target ≤ 5 %). Rounds: off " + ", ".join(f"{r:.0f}" for r in rates["off"]) + "; on "
        + ", ".join(f"{r:.0f}" for r in rates["on"]) + "."])
    print(table)
    if args.update_docs:
        write_doc_block("metrics-overhead", table, "Metrics overhead", "`tests/benchmarks/metrics_overhead.py`: the "
                        "same embedded server with metrics off and on, run creation from one client.")


if __name__ == "__main__":
    main()
