"""``make bench-postgres`` (also in ``make bench``): the same workloads on the embedded SQLite server, on one
``pushpool server`` replica on PostgreSQL, and on four replicas sharing one PostgreSQL.

PostgreSQL is a private cluster the script starts on 127.0.0.1 (as the tests do, tests/postgres_fixtures.py),
each system on a fresh database. With four replicas the client spreads its connections over them, as a load
balancer would. Workloads (tests/benchmarks/workloads.py): run creation from 1 and 16 clients, the run
lifecycle created → PENDING → RUNNING → COMPLETED, and scheduling (deployments on ``*/5 * * * *`` until every
run of the next 24 hours exists).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import threading
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.benchmarks.systems import REPO, PushpoolApi, PushpoolServer, Server, write_doc_block
from tests.benchmarks.workloads import Scheduling, Throughput, lifecycle, run_creation, scheduling
from tests.postgres_fixtures import start_postgres


class Replica(Server):
    """A further ``pushpool server`` on the same PostgreSQL (the first one bootstrapped the key)."""

    label = "pushpool replica"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__()
        command = [sys.executable, "-m", "tests.benchmarks.pushpool_server", "--port", str(self.port)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
        full_env.update(PUSHPOOL_HOME=str(self.home), PYTHONPATH=str(REPO), **env)
        self.process = subprocess.Popen(command, env=full_env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy()


class SpreadApi(PushpoolApi):
    """pushpool's API over several replicas: each new client connection goes to the next one."""

    def __init__(self, first: PushpoolServer, others: list[Replica]) -> None:
        super().__init__(first)
        self.urls = itertools.cycle([first.url, *(r.url for r in others)])
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        with self._lock:
            url = next(self.urls)
        return httpx.Client(base_url=f"{url}/api/workspaces/default",
                            headers={"Authorization": f"Bearer {self.server.key}"}, timeout=60)


#: As workload 3 of ``make bench`` runs the scheduler: a day ahead, at most 300 runs per deployment and pass.
SCHEDULER = {"PUSHPOOL_SCHEDULER_HORIZON_SECONDS": "86400", "PUSHPOOL_SCHEDULER_MAX_RUNS": "300"}


def start(system: str, database_url: str | None) -> tuple[SpreadApi, list[Server]]:
    if system == "sqlite":
        server = PushpoolServer(env=SCHEDULER)
        return SpreadApi(server, []), [server]
    env = {**SCHEDULER, "PUSHPOOL_STORE": "postgresql", "PUSHPOOL_DATABASE_URL": database_url or "",
           "PUSHPOOL_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    first = PushpoolServer(env=env)
    others = [Replica(env) for _ in range(3 if system == "postgresql-4" else 0)]
    return SpreadApi(first, others), [first, *others]


def measure(system: str, database_url: str | None, runs: int, deployments: int, cap: float) -> dict[str, Any]:
    api, servers = start(system, database_url)
    try:
        with api.client() as client:
            api.create_pool(client, "bench", paused=True)  # runs stay where the workload puts them
            deployment = api.create_deployment(client, "throughput", "bench")
        figures: dict[str, Any] = {
            "sequential": run_creation(api, deployment, total=runs, clients=1, cap_seconds=cap),
            "concurrent": run_creation(api, deployment, total=runs, clients=16, cap_seconds=cap),
            "lifecycle": lifecycle(api, deployment, total=runs // 2, clients=1, cap_seconds=cap),
        }
        count_all = _counter(servers[0], database_url)
        before = count_all()

        def count() -> int:
            return count_all() - before

        figures["scheduling"] = scheduling(api, lambda tz: {"schedules": [{"cron": "*/5 * * * *", "timezone": tz}]},
                                           count, deployments=deployments, pool="bench", cap_seconds=cap * 2)
        return figures
    finally:
        for server in servers:
            server.stop()


def _counter(server: Server, database_url: str | None) -> Any:
    """How many runs the store holds, read from the database itself (the API has no count)."""
    if database_url is None:
        import sqlite3

        db = server.home / "pushpool.db"

        def count_sqlite() -> int:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM flow_runs").fetchone()[0])

        return count_sqlite

    import psycopg

    def count_postgres() -> int:
        with psycopg.connect(database_url) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM flow_runs").fetchone()[0])

    return count_postgres


def cell(value: Throughput | Scheduling, what: str) -> str:
    if isinstance(value, Scheduling):
        return f"{value.seconds:.1f} s" if value.complete else \
            f"> {value.seconds:.0f} s ({value.created_runs:,} of {value.expected_runs:,})"
    if what == "p99":
        return f"{value.percentile(0.99):.1f} ms"
    text = f"{value.rate:.0f}/s" + (f" ({value.errors} errors)" if value.errors else "")
    return text + (" (capped)" if value.capped else "")


def table(results: dict[str, dict[str, Any]], runs: int, deployments: int) -> str:
    names = {"sqlite": "SQLite (embedded)", "postgresql-1": "PostgreSQL, 1 replica",
             "postgresql-4": "PostgreSQL, 4 replicas"}
    systems = [s for s in names if s in results]
    rows = ["| measure | " + " | ".join(names[s] for s in systems) + " |", "|---|" + "---:|" * len(systems)]
    for key, what, title in (("sequential", "rate", f"run creation, 1 client ({runs} runs)"),
                             ("concurrent", "rate", f"run creation, 16 clients ({runs} runs)"),
                             ("concurrent", "p99", "run creation, 16 clients: p99"),
                             ("lifecycle", "rate", f"lifecycle create→PENDING→RUNNING→COMPLETED ({runs // 2})"),
                             ("scheduling", "", f"scheduling: {deployments} deployments × 288 runs exist after")):
        rows.append(f"| {title} | " + " | ".join(cell(results[s][key], what) for s in systems) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    postgres = start_postgres()
    if postgres is None:
        print("PostgreSQL is not installed and apt-get cannot install it here", file=sys.stderr)
        return 1
    results: dict[str, dict[str, Any]] = {}
    try:
        for system in ("sqlite", "postgresql-1", "postgresql-4"):
            url = postgres.new_database() if system != "sqlite" else None
            results[system] = measure(system, url, args.runs, args.deployments, args.cap)
            print(f"{system}: " + ", ".join(f"{k} {cell(v, 'rate')}" for k, v in results[system].items()),
                  file=sys.stderr)
    finally:
        postgres.stop()
    result = table(results, args.runs, args.deployments)
    print(result)
    if args.update_docs:
        write_doc_block("postgres", result, "PostgreSQL and replicas",
                        "`make bench-postgres` (tests/benchmarks/postgres.py): the same workloads on the embedded "
                        "server, one replica on PostgreSQL and four sharing it (a private PostgreSQL 15 on the "
                        "same 2-core machine, fsync off):")
    return 0


if __name__ == "__main__":
    sys.exit(main())
