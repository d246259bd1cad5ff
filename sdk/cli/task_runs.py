"""``task-run ls``: the task runs of a flow run, as its runner reported them."""

from __future__ import annotations

from datetime import datetime

import typer

from pushpool.cli.common import Output, OutputOption, emit, get_client, table
from pushpool.cli.flow_runs import RUN_HELP, resolve_run

task_run_app = typer.Typer(help="Task runs of a flow run.", no_args_is_help=True)

#: Task runs one page of the API holds.
PAGE = 1000


def _duration(task_run: dict) -> str:
    if not task_run["start_time"] or not task_run["end_time"]:
        return "-"
    seconds = (datetime.fromisoformat(task_run["end_time"]) - datetime.fromisoformat(task_run["start_time"]))
    return f"{seconds.total_seconds():.2f}s"


def _state(task_run: dict) -> str:
    name = task_run["state_name"]
    return task_run["state_type"] if name.upper() == task_run["state_type"] else f"{task_run['state_type']} ({name})"


@task_run_app.command("ls")
def ls(flow_run: str = typer.Option(..., "--flow-run", "-r", help=RUN_HELP),
       state: str = typer.Option(None, "--state", help="Only task runs in this state, e.g. FAILED."),
       limit: int = typer.Option(200, "--limit", min=1, max=100_000),
       output: Output = OutputOption) -> None:
    """A flow run's task runs in the order they started: state, attempts, cache hits, duration, error."""
    with get_client() as client:
        run = resolve_run(client, flow_run)
        found: list[dict] = []
        after = None
        while len(found) < limit:
            params = {"limit": PAGE, **({"after": after} if after else {})}
            page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/task_runs"), params=params)
            found += [t for t in page if state is None or t["state_type"] == state.upper()]
            if len(page) < PAGE:
                break
            after = page[-1]["id"]
    found = found[:limit]
    emit(found, output, lambda ts: table(f"Task runs of {run['name']}", [
        "name", "state", "attempts", "cached", "duration", "error"], [
        (t["name"], _state(t), t["attempts"], "yes" if t["cache_hit"] else "", _duration(t),
         (t["error"] or "")[:80]) for t in ts]))
