"""``flow-run`` commands: list, inspect, cancel, retry, delete, logs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import typer

from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, table
from pushpool.cli.deployments import watch_run
from pushpool.control_plane.errors import InvalidInput

flow_run_app = typer.Typer(help="List, inspect, cancel, retry and delete flow runs and read their logs.",
                           no_args_is_help=True)

STATES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLING", "CANCELLED")


RUN_HELP = "Flow run: its id, the end of its id as 'flow-run ls' shows it, or its name."


def _state(run: dict) -> str:
    state = run["state"]
    return state["type"] if state["name"].upper() == state["type"] else f"{state['type']} ({state['name']})"


@flow_run_app.command("ls")
def ls(
    state: list[str] = typer.Option(None, "--state", help="Repeatable, e.g. --state FAILED --state CRASHED."),
    deployment: str = typer.Option(None, "--deployment", "-d", help="flow-name/deployment-name"),
    pool: str = typer.Option(None, "--pool", help="Work pool name."),
    flow: str = typer.Option(None, "--flow", help="Only runs of this flow."),
    tag: list[str] = typer.Option(None, "--tag", help="Only runs carrying this tag (repeat: every one of them)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    upcoming: bool = typer.Option(False, "--upcoming", help="Also show runs scheduled in the future."),
    wide: bool = typer.Option(False, "--wide", "-w", help="Also the start, infrastructure and console URL."),
    parent: str = typer.Option(None, "--parent", help="Only the runs this run's flow started (run_deployment)."),
    output: Output = OutputOption,
) -> None:
    """Recent flow runs, newest first (future scheduled runs only with --upcoming).

    The ``run`` column is the end of the run's id (its random part): unique, and accepted by every command
    that takes a run, as are the full id, a unique start of it and the run's name."""
    states = [s.upper() for s in state or []]
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise InvalidInput(f"--state: unknown state {unknown[0]!r} (states: {', '.join(STATES)})")
    with get_client() as client:
        if parent is not None:
            children = client.request("GET", client.ws(f"/flow_runs/{resolve_run(client, parent)['id']}/children"))
            runs = [r for r in children if not states or r["state"]["type"] in states][:limit]
        else:
            deployment_id = client.read_deployment_by_name(deployment)["id"] if deployment else None
            before = None if upcoming else datetime.now(UTC).isoformat()
            runs = client.list_flow_runs(state=states or None, deployment_id=deployment_id, work_pool=pool,
                                         flow_name=flow, tag=tag or None, limit=limit, scheduled_before=before)
    columns = ["run", "name", "deployment", "state", "scheduled (UTC)"]
    if wide:
        columns += ["start", "infra", "console URL"]

    def row(r: dict) -> tuple:
        cells = (short_id(r["id"]), r["name"], f"{r['flow_name']}/{r['deployment_name']}", _state(r),
                 compact_time(r["scheduled_time"]))
        return cells + ((_lateness(r), r["infra_id"], r["console_url"]) if wide else ())

    emit(runs, output, lambda rs: table("Flow runs", columns, [row(r) for r in rs]))


#: Characters of the id's end that ``flow-run ls`` shows (a v7 id starts with its time, ends at random).
SHORT_ID = 12


def short_id(run_id: str) -> str:
    return run_id.replace("-", "")[-SHORT_ID:]


def compact_time(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%m-%d %H:%M:%S") if value else "-"


def _lateness(run: dict) -> str:
    if not run["start_time"]:
        return "-"
    late = (datetime.fromisoformat(run["start_time"]) - datetime.fromisoformat(run["scheduled_time"])).total_seconds()
    return f"+{late:.1f}s"


def resolve_run(client, reference: str) -> dict:
    """A run from its full id, the end of its id as ``flow-run ls`` shows it, a unique start of its id, or its
    name (among the 1,000 most recent runs)."""
    if len(reference) == 36:
        return client.read_flow_run(reference)
    compact = reference.replace("-", "").lower()
    recent = client.list_flow_runs(limit=1000)
    for matches in ([r for r in recent if r["name"] == reference],
                    [r for r in recent if compact and r["id"].replace("-", "").endswith(compact)],
                    [r for r in recent if compact and r["id"].replace("-", "").startswith(compact)]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInput(f"flow run: {reference!r} matches {len(matches)} recent runs "
                               f"({', '.join(short_id(r['id']) for r in matches[:5])}, ...); give more of the id")
    raise InvalidInput(f"flow run: no recent run is named {reference!r} or has an id that starts or ends so")


@flow_run_app.command("inspect")
def inspect(run_id: str = typer.Argument(..., help=RUN_HELP)) -> None:
    """Show a flow run, its state history and how many of its task runs are in which state, as JSON."""
    with get_client() as client:
        run = resolve_run(client, run_id)
        run["state_history"] = client.request("GET", client.ws(f"/flow_runs/{run['id']}/states"))
        task_runs = client.request("GET", client.ws(f"/flow_runs/{run['id']}/task_runs"), params={"limit": 1000})
    counts: dict[str, int] = {}
    for task_run in task_runs:
        counts[task_run["state_type"]] = counts.get(task_run["state_type"], 0) + 1
    # The first page only: 'pushpool task-run ls --flow-run RUN' lists them all.
    run["task_runs"] = {"by_state": counts, "listed": len(task_runs), "more": len(task_runs) == 1000}
    typer.echo(json.dumps(run, indent=2))


@flow_run_app.command("cancel")
def cancel(run_id: str = typer.Argument(..., help=RUN_HELP), yes: bool = YesOption) -> None:
    """Cancel a run: at once if it has not started, else its infrastructure is stopped."""
    with get_client() as client:
        run = resolve_run(client, run_id)
        confirm(f"Cancel flow run {run['name']!r} ({run['state']['type']})?", yes)
        updated = client.cancel_flow_run(run["id"])
    console.print(f"Flow run {run['name']!r} is {updated['state']['type']}")


@flow_run_app.command("retry")
def retry(run_id: str = typer.Argument(..., help=RUN_HELP), watch: bool = typer.Option(
              False, "--watch", help="Follow the new run until it is final; exit 1 unless it COMPLETED."),
          output: Output = OutputOption) -> None:
    """Start a new attempt of a finished run: a new run, due now, with the same parameters and job variables."""
    with get_client() as client:
        run = resolve_run(client, run_id)
        again = client.request("POST", client.ws(f"/flow_runs/{run['id']}/retry"))
        if output is Output.json:
            emit(again, output, str)
        else:
            console.print(f"Flow run {again['name']!r} ({short_id(again['id'])}) retries {run['name']!r} "
                          f"({run['state']['type']}) of {run['flow_name']}/{run['deployment_name']}", highlight=False)
        if watch:
            watch_run(client, again)


@flow_run_app.command("delete")
def delete(run_ids: list[str] = typer.Argument(..., help="Flow runs: " + RUN_HELP), yes: bool = YesOption) -> None:
    """Delete finished (or not yet started) runs and their state history; active runs must be cancelled first."""
    with get_client() as client:
        runs = [resolve_run(client, reference) for reference in run_ids]
        names = ", ".join(f"{r['name']!r} ({r['state']['type']})" for r in runs)
        confirm(f"Delete flow run(s) {names}?", yes)
        for run in runs:
            client.request("DELETE", client.ws(f"/flow_runs/{run['id']}"))
            console.print(f"Deleted flow run {run['name']!r}", highlight=False)


@flow_run_app.command("logs")
def logs(run_id: str = typer.Argument(..., help=RUN_HELP),
         tail: int = typer.Option(None, "--tail", "-n", min=1, max=10_000, help="Only the last N lines."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines while the run runs.")
         ) -> None:
    """Print the run's log lines (those its runner sent, or the cloud's), or where to find them. With --follow a
    run that has not started yet is waited for."""
    with get_client() as client:
        run = resolve_run(client, run_id)
        while True:
            page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"),
                                  params={"tail": tail} if tail else None)
            waiting = not page["supported"] and not run.get("console_url") and run["state"]["type"] not in FINAL_STATES
            if not (follow and waiting):
                break
            time.sleep(0.5)  # not dispatched yet: its first lines are still to come
            run = client.read_flow_run(run["id"])
        if page["supported"]:
            _print_pages(client, run, page, follow)
            return
        _print_local_or_link(client, run, tail, follow)


def _print_pages(client, run: dict, page: dict, follow: bool) -> None:
    for line in page["lines"]:
        typer.echo(line)
    while follow:
        current = client.read_flow_run(run["id"])
        page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"),
                              params={"cursor": page["cursor"]} if page["cursor"] else None)
        for line in page["lines"]:
            typer.echo(line)
        if current["state"]["type"] in FINAL_STATES and not page["lines"]:
            return
        time.sleep(2)
    if run.get("logs_url"):
        console.print(f"Console: {run['logs_url']}", soft_wrap=True, highlight=False)


FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _print_local_or_link(client, run: dict, tail: int | None, follow: bool = False,
                         poll_seconds: float = 0.5) -> None:
    url = run.get("console_url")
    if not url:
        raise InvalidInput(f"flow run {run['name']!r} has no infrastructure yet ({run['state']['type']})")
    parsed = urlparse(url)
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else None
    if path is None or not path.is_file():
        console.print(f"Logs of {run['name']!r}: {url}", soft_wrap=True, highlight=False)
        return
    with path.open("rb") as log:
        lines = log.read().decode(errors="replace").splitlines()
        for line in lines[-tail:] if tail else lines:
            typer.echo(line)
        while follow:  # until the run is final and its file has nothing more
            final = client.read_flow_run(run["id"])["state"]["type"] in FINAL_STATES
            more = log.read()
            if more:
                typer.echo(more.decode(errors="replace"), nl=False)
            elif final:
                return
            else:
                time.sleep(poll_seconds)
