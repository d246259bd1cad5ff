"""The demo: the whole loop on the embedded default, with no cloud account.

Starts ``pushpool server start`` in a fresh ``PUSHPOOL_HOME``, creates a
``local:push`` work pool, deploys ``docs/examples/hello_flow.py:hello`` with an
interval schedule of a few seconds, and shows the runs until several completed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
WANTED_COMPLETED = 3
TIME_LIMIT_SECONDS = 30
INTERVAL_SECONDS = 4
PREFETCH_SECONDS = 3
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_profile(home: Path, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited early with code {server.returncode}")
        if (home / "profiles.toml").exists():
            return
        time.sleep(0.1)
    raise SystemExit("the server did not start within 30 s")


def short_time(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%H:%M:%S.%f")[:-3] if value else "-"


def runs_table(runs: list[dict]) -> Table:
    table = Table(title="Flow runs of hello/demo (local:push)")
    for column in ("run", "state", "scheduled", "started", "late s", "infra"):
        table.add_column(column, no_wrap=True)
    colours = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "FAILED": "red", "CRASHED": "red"}
    for run in sorted(runs, key=lambda r: r["scheduled_time"]):
        state = run["state"]["type"]
        late = "-"
        if run["start_time"]:
            delta = datetime.fromisoformat(run["start_time"]) - datetime.fromisoformat(run["scheduled_time"])
            late = f"{delta.total_seconds():.2f}"
        table.add_row(run["name"], f"[{colours.get(state, 'white')}]{state}[/]",
                      short_time(run["scheduled_time"]), short_time(run["start_time"]), late,
                      run["infra_id"] or "-")
    return table


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="pushpool-demo-"))
    port = free_port()
    # The demo uses its own home and the key its server writes there, never the user's settings.
    for name in [n for n in os.environ if n.startswith("PUSHPOOL_")]:
        del os.environ[name]
    os.environ["PUSHPOOL_HOME"] = str(home)
    console.print(f"[bold]Starting the embedded server[/] on 127.0.0.1:{port} (PUSHPOOL_HOME={home})")
    log = open(home / "server.log", "w")  # noqa: SIM115 - the server writes to it until the end
    command = [sys.executable, "-m", "pushpool.cli.main", "server", "start", "--port", str(port),
               "--log-level", "warning"]
    server = subprocess.Popen(command, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_profile(home, server)
        from pushpool.client import PushpoolClient
        from pushpool.flows import Flow

        sys.path.insert(0, str(ROOT))
        from docs.examples.hello_flow import hello  # noqa: E402

        assert isinstance(hello, Flow)
        client = PushpoolClient()
        for _ in range(50):
            try:
                client.health()
                break
            except Exception:
                time.sleep(0.1)
        console.print(f"Logged in as {client.me()['actor']['name']!r} with the key the server saved to its profile")
        client.create_work_pool("demo", "local:push", prefetch_seconds=PREFETCH_SECONDS)
        console.print(f"Created work pool [bold]demo[/] of type local:push (prefetch {PREFETCH_SECONDS}s: runs are "
                      "pushed early and start on time)")
        os.chdir(ROOT)  # entrypoints are relative to the project root
        deployment = hello.deploy(name="demo", work_pool_name="demo", interval=INTERVAL_SECONDS,
                                  parameters={"name": "pushpool", "count": 2})
        console.print(f"Deployed [bold]{hello.name}/demo[/] every {INTERVAL_SECONDS}s "
                      f"(deployment {deployment['id']})\n")
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                due_by = datetime.now(UTC).isoformat()
                runs = client.list_flow_runs(deployment_id=deployment["id"], scheduled_before=due_by, limit=10)
                live.update(runs_table(runs))
                completed = sum(r["state"]["type"] == "COMPLETED" for r in runs)
                if completed >= WANTED_COMPLETED or time.monotonic() - started > TIME_LIMIT_SECONDS:
                    break
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        console.print()
        if completed < WANTED_COMPLETED:
            console.print(f"[red]Only {completed} completed run(s) after {elapsed:.0f}s[/]; "
                          f"server log: {home / 'server.log'}")
            return 1
        console.print(f"[green]{completed} runs COMPLETED within {elapsed:.1f}s[/] of deploying.")
        console.print("Console URLs (each run's output):", soft_wrap=True)
        for run in runs:
            if run["console_url"]:
                console.print(f"  {run['name']}: {run['console_url']}", soft_wrap=True, highlight=False)
        console.print(f"Server log: {home / 'server.log'}", soft_wrap=True, highlight=False)
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
