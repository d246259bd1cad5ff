"""``deployment backfill`` and the ``backfill`` commands: run a deployment's schedule over a past range, follow it
with a progress bar, list, pause, resume and cancel it."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from pushpool.backfills import REPROCESS, backfill
from pushpool.cli.common import (
    Output,
    OutputOption,
    YesOption,
    confirm,
    console,
    emit,
    get_client,
    parse_datetime,
    parse_json_object,
    parse_pairs,
    short_time,
    table,
)
from pushpool.cli.deployments import deployment_app
from pushpool.client import PushpoolClient
from pushpool.control_plane.backfill_models import DEFAULT_MAX_ACTIVE, MAX_ACTIVE_LIMIT
from pushpool.control_plane.errors import InvalidInput

backfill_app = typer.Typer(help="Backfills: a deployment's schedule run over a past range.", no_args_is_help=True)
FINAL = {"COMPLETED", "CANCELLED"}


@deployment_app.command("backfill")
def create(
    name: str = typer.Argument(..., help="flow-name/deployment-name"),
    start: str = typer.Option(..., "--start", help="ISO 8601 time with a timezone (first occurrence at or after)."),
    end: str = typer.Option(..., "--end", help="ISO 8601 time with a timezone (last occurrence at or before)."),
    schedule: str = typer.Option(None, "--schedule", help="The schedule's id or slug (when it has several)."),
    reprocess: str = typer.Option("none", "--reprocess",
                                  help="Occurrences that have a run: none (leave them), failed (run those whose "
                                       "latest run failed or crashed) or all."),
    max_active: int = typer.Option(DEFAULT_MAX_ACTIVE, "--max-active", min=1, max=MAX_ACTIVE_LIMIT,
                                   help="At most N of its runs active at once."),
    backwards: bool = typer.Option(False, "--backwards", help="Latest occurrence first."),
    param: list[str] = typer.Option(None, "--param", help="KEY=VALUE (JSON values allowed); repeatable."),
    params: str = typer.Option(None, "--params", help="All parameters as a JSON object."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the runs it would create; create nothing."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow it with a progress bar until it ends."),
    output: Output = OutputOption,
) -> None:
    """Run a deployment's schedule over a past range: each occurrence becomes a run (at most --max-active at once)."""
    if reprocess not in REPROCESS:
        raise InvalidInput(f"--reprocess: {reprocess!r} is not one of {', '.join(REPROCESS)}")
    parameters = {**parse_json_object(params, "--params"), **parse_pairs(param, "--param")}
    with get_client() as client:
        result = backfill(name, parse_datetime(start, "--start"), parse_datetime(end, "--end"), schedule=schedule,
                          reprocess=reprocess, max_active=max_active, backwards=backwards, parameters=parameters,
                          dry_run=dry_run, client=client)
        if dry_run:
            emit(result, output, _plan_table)
            return
        if output is Output.json:
            emit(result, output, str)
            return
        console.print(f"Backfill {result['id']} of {name}: {result['total']} occurrence(s) from "
                      f"{short_time(result['start'])} to {short_time(result['end'])} UTC", highlight=False)
        if wait:
            follow(client, result)


def _plan_table(plan: dict[str, Any]) -> Any:
    rows = [(short_time(r["scheduled_time"]), "create" if r["create"] else "skip", r["reason"] or "")
            for r in plan["runs"]]
    shown = "" if len(plan["runs"]) == plan["total"] else f" (the first {len(plan['runs'])} shown)"
    summary = Text(f"Dry run of {plan['deployment']}: {plan['to_create']} run(s) to create, {plan['to_skip']} "
                   f"occurrence(s) to skip{shown}; nothing was created")
    return Group(summary, table(None, ["scheduled (UTC)", "action", "why"], rows))


def follow(client: PushpoolClient, record: dict[str, Any], poll_seconds: float = 1.0) -> dict[str, Any]:
    """A progress bar until the backfill ends (Ctrl-C stops watching, not the backfill); exit 1 if runs failed."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("occurrences", total=record["total"])
            while True:
                progress = record["progress"]
                done = progress["ended"] + progress["skipped"]
                bar.update(task, completed=done, description=f"{record['state'].lower()}: {progress['active']} "
                                                             f"active, {progress['ended']} ended")
                if record["state"] in FINAL:
                    break
                time.sleep(poll_seconds)
                record = client.request("GET", client.ws(f"/backfills/{record['id']}"))
    except KeyboardInterrupt:
        console.print(f"Stopped watching; the backfill goes on (pushpool backfill inspect {record['id']})")
        raise typer.Exit(130) from None
    finished = record["progress"]["finished"]
    console.print(f"Backfill {record['state'].lower()}: " + (", ".join(f"{n} {state.lower()}"
                                                                       for state, n in sorted(finished.items()))
                                                             or "no runs") + f", {record['skipped']} skipped")
    if any(state in finished for state in ("FAILED", "CRASHED")):
        raise typer.Exit(1)
    return record


def _row(b: dict[str, Any]) -> tuple:
    p = b["progress"]
    return (b["id"], b["deployment_name"], b["state"], f"{short_time(b['start'])} → {short_time(b['end'])}",
            f"{p['ended']}/{p['created_runs']} ended, {p['active']} active, {p['skipped']} skipped of {p['total']}")


@backfill_app.command("ls")
def ls(deployment: str = typer.Option(None, "--deployment", help="flow-name/deployment-name"),
       output: Output = OutputOption) -> None:
    """List backfills, newest first."""
    with get_client() as client:
        params = {"deployment_id": client.read_deployment_by_name(deployment)["id"]} if deployment else None
        found = client.request("GET", client.ws("/backfills"), params=params)
    emit(found, output, lambda bs: table("Backfills", ["id", "deployment", "state", "range (UTC)", "progress"],
                                         [_row(b) for b in bs]))


@backfill_app.command("inspect")
def inspect(backfill_id: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Show a backfill and its progress."""
    with get_client() as client:
        found = client.request("GET", client.ws(f"/backfills/{backfill_id}"))
    emit(found, output, lambda b: table(None, ["id", "deployment", "state", "range (UTC)", "progress"], [_row(b)]))


@backfill_app.command("watch")
def watch(backfill_id: str = typer.Argument(...)) -> None:
    """Follow a backfill with a progress bar until it ends; exit 1 if any of its runs failed."""
    with get_client() as client:
        follow(client, client.request("GET", client.ws(f"/backfills/{backfill_id}")))


def _act(backfill_id: str, action: str, output: Output) -> None:
    with get_client() as client:
        changed = client.request("POST", client.ws(f"/backfills/{backfill_id}/{action}"))
    emit(changed, output, lambda b: f"Backfill {b['id']} is {b['state'].lower()}")


@backfill_app.command("pause")
def pause(backfill_id: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Make no more runs until resumed (its runs already made go on)."""
    _act(backfill_id, "pause", output)


@backfill_app.command("resume")
def resume(backfill_id: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Go on making runs."""
    _act(backfill_id, "resume", output)


@backfill_app.command("cancel")
def cancel(backfill_id: str = typer.Argument(...), yes: bool = YesOption, output: Output = OutputOption) -> None:
    """Stop the backfill and cancel its runs that have not ended."""
    confirm(f"Cancel backfill {backfill_id} and its runs that have not ended?", yes)
    _act(backfill_id, "cancel", output)
