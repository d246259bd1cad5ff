"""``make bench-dispatch`` (also in ``make bench``): many runs due in the same second on the embedded server.

For each size (1,000 and 10,000 by default) a fresh server with the recording pusher (each submission's
moment appended to a file) gets that many runs of a paused pool, all scheduled for the same second a little
after they are all made; the pool is resumed before that second. Printed per size: the lateness of the
submissions after the due second (p50, p99, max) and the dispatch's cost per due run (from the first
submission to the last, divided by the runs). Issue 28's marks: p99 lateness ≤ 1 s at 10,000, and a cost per
run that stays flat from 1,000 to 10,000.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.benchmarks.run import _wait_for_submissions
from tests.benchmarks.systems import PushpoolApi, PushpoolServer, write_doc_block
from tests.benchmarks.workloads import Lateness, create_due_runs, due_at


def one_size(count: int, creation_rate: float) -> Lateness:
    """The lateness of each run's submission after the second they were all due."""
    record = Path(tempfile.mkdtemp(prefix="pushpool-bench-")) / "submissions.log"
    server = PushpoolServer(record=record)
    try:
        api = PushpoolApi(server)
        lead = count / creation_rate + 15  # every run exists, and the pool is resumed, before they are due
        with api.client() as client:
            api.create_pool(client, "due", paused=True)
            deployment = api.create_deployment(client, "due", "due")
            at = due_at(lead)
            ids = set(create_due_runs(api, deployment, count, at))
            client.patch("/work_pools/due", json={"paused": False}).raise_for_status()
        return _wait_for_submissions(record, ids, at, timeout=300)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--creation-rate", type=float, default=100.0,
                        help="runs/s the harness assumes it can create (sets how far ahead they are due)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    rows = ["| runs due in one second | submitted | lateness p50 / p99 / max | dispatch: first → last | "
            "per due run | ÷ the first size's |", "|---:|---:|---:|---:|---:|---:|"]
    first_cost: float | None = None  # flat means a ratio near 1× at every size
    for count in (int(s) for s in args.sizes.split(",")):
        lateness = one_size(count, args.creation_rate)
        if not lateness.seen:
            rows.append(f"| {count:,} | 0 | none submitted | | | |")
            continue
        spread = lateness.maximum - min(lateness.seen)  # first submission to last
        cost = spread / max(1, len(lateness.seen)) * 1000
        first_cost = cost if first_cost is None else first_cost
        ratio = f"{cost / first_cost:.2f}×" if first_cost > 0 else ""
        rows.append(f"| {count:,} | {len(lateness.seen):,} | {lateness.percentile(0.5):+.2f} / "
                    f"{lateness.percentile(0.99):+.2f} / {lateness.maximum:+.2f} s | {spread:.2f} s | "
                    f"{cost:.2f} ms | {ratio} |")
        print(rows[-1], file=sys.stderr)
    table = "\n".join(rows)
    print(table)
    if args.update_docs:
        write_doc_block("dispatch-scale", table, "Dispatch at scale",
                        "`make bench-dispatch` (tests/benchmarks/dispatch_scale.py): N runs due in the same second on "
                        "the embedded server with the recording pusher:")
    return 0


if __name__ == "__main__":
    sys.exit(main())
