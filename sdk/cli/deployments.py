"""``deployment`` commands: list, inspect, delete, run (with --watch), and schedules."""

from __future__ import annotations

import json
import string
import time
from datetime import UTC, datetime
from typing import Any

import typer

from pushpool.cli.common import (
    Output,
    OutputOption,
    YesOption,
    confirm,
    console,
    emit,
    get_client,
    parse_datetime,
    parse_duration,
    parse_json_object,
    parse_pairs,
    short_time,
    table,
)
from pushpool.client import PushpoolClient
from pushpool.control_plane.errors import InvalidInput
from pushpool.deployments import catch_up_policy, collision_strategy_value
from pushpool.runs import FINAL

deployment_app = typer.Typer(help="List, inspect, run and schedule deployments.", no_args_is_help=True)
schedule_app = typer.Typer(help="Manage a deployment's schedules.", no_args_is_help=True)
deployment_app.add_typer(schedule_app, name="schedule")

FAILED_STATES = {"FAILED", "CRASHED", "CANCELLED"}
OVERLAPS = ("allow", "skip", "buffer_one", "cancel_other")


def _full(d: dict) -> str:
    return f"{d['flow_name']}/{d['name']}"


def describe_schedule(s: dict) -> str:
    if s.get("cron"):
        return f"cron {s['cron']}"
    if s.get("rrule"):
        return f"rrule {s['rrule']}"
    return f"every {s['interval_seconds']:g}s"


@deployment_app.command("ls")
def ls(work_pool: str = typer.Option(None, "--pool", help="Only this pool's deployments."),
       output: Output = OutputOption) -> None:
    """List deployments."""
    with get_client() as client:
        deployments = client.request("GET", client.ws("/deployments"), params={"work_pool": work_pool} if work_pool
                                     else None)
    emit(deployments, output, lambda ds: table("Deployments", ["name", "schedules", "paused", "tags", "id"], [
        (_full(d), "; ".join(describe_schedule(s) + ("" if s["active"] else " (paused)") for s in d["schedules"]),
         d["paused"], ",".join(d["tags"]), d["id"]) for d in ds]))


@deployment_app.command("inspect")
def inspect(name: str = typer.Argument(..., help="flow-name/deployment-name")) -> None:
    """Show a deployment as JSON."""
    with get_client() as client:
        typer.echo(json.dumps(client.read_deployment_by_name(name), indent=2))


@deployment_app.command("delete")
def delete(name: str = typer.Argument(..., help="flow-name/deployment-name"), yes: bool = YesOption) -> None:
    """Delete a deployment and its runs that have not started."""
    with get_client() as client:
        deployment = client.read_deployment_by_name(name)
        confirm(f"Delete deployment {name!r} and its scheduled runs?", yes)
        client.request("DELETE", client.ws(f"/deployments/{deployment['id']}"))
    console.print(f"Deleted deployment {name!r}")


def _update(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    with get_client() as client:
        deployment = client.read_deployment_by_name(name)
        return client.request("PATCH", client.ws(f"/deployments/{deployment['id']}"), json=changes)


@deployment_app.command("pause")
def pause(name: str = typer.Argument(..., help="flow-name/deployment-name")) -> None:
    """Pause a deployment: no scheduled runs are made and its waiting ones are dropped until it resumes."""
    _update(name, {"paused": True})
    console.print(f"Paused deployment {name!r}")


@deployment_app.command("resume")
def resume(name: str = typer.Argument(..., help="flow-name/deployment-name")) -> None:
    """Resume a paused deployment (its schedules make runs again)."""
    _update(name, {"paused": False})
    console.print(f"Resumed deployment {name!r}")


@deployment_app.command("update")
def update(
    name: str = typer.Argument(..., help="flow-name/deployment-name"),
    concurrency_limit: int = typer.Option(None, "--concurrency-limit", min=0, help="At most N active runs."),
    no_concurrency_limit: bool = typer.Option(False, "--no-concurrency-limit", help="Remove the limit."),
    collision_strategy: str = typer.Option(None, "--collision-strategy",
                                           help="At the limit: ENQUEUE (wait) or CANCEL_NEW."),
    crash_retries: int = typer.Option(None, "--crash-retries", min=0, max=10,
                                      help="Instead of the pool's: resubmit a run whose infrastructure crashed."),
    overlap: str = typer.Option(None, "--overlap", help="A run due while the previous one is active: allow, skip, "
                                                        "buffer_one or cancel_other."),
    catch_up: str = typer.Option(None, "--catch-up", help="Runs missed while the control plane or pool was down: "
                                                          "all, latest, none, within:<seconds>, or pool (its own)."),
    output: Output = OutputOption,
) -> None:
    """Change a deployment's concurrency limit, collision strategy, crash retries, overlap or catch-up."""
    changes: dict[str, Any] = {}
    if overlap is not None:
        if overlap not in OVERLAPS:
            raise InvalidInput(f"--overlap: {overlap!r} is not one of {', '.join(OVERLAPS)}")
        changes["overlap"] = overlap
    if catch_up is not None:
        changes["late_run_policy"] = catch_up_policy(catch_up, "--catch-up")
    if crash_retries is not None:
        changes["crash_retries"] = crash_retries
    if concurrency_limit is not None and no_concurrency_limit:
        raise InvalidInput("--concurrency-limit and --no-concurrency-limit: give one of them")
    if concurrency_limit is not None or no_concurrency_limit:
        changes["concurrency_limit"] = None if no_concurrency_limit else concurrency_limit
    if collision_strategy is not None:
        changes["collision_strategy"] = collision_strategy_value(collision_strategy, "--collision-strategy")
    if not changes:
        raise InvalidInput("nothing to change: give --concurrency-limit, --no-concurrency-limit, "
                           "--collision-strategy, --crash-retries, --overlap or --catch-up")
    updated = _update(name, changes)
    if output is Output.json:
        emit(updated, output, str)
    else:
        crash = "the pool's" if updated.get("crash_retries") is None else updated["crash_retries"]
        console.print(f"Deployment {name!r}: concurrency limit {updated['concurrency_limit'] or 'none'}, "
                      f"collision strategy {updated['collision_strategy']}, crash retries {crash}, "
                      f"overlap {updated['overlap']}, catch-up {describe_catch_up(updated['late_run_policy'])}")


def describe_catch_up(policy: dict[str, Any] | None) -> str:
    if policy is None:
        return "the pool's"
    if policy["mode"] == "skip_late":
        return "none" if policy["skip_after_seconds"] == 0 else f"within {policy['skip_after_seconds']}s"
    return {"run_all": "all", "latest_only": "latest"}[policy["mode"]]


def _run_name(template: str | None, parameters: dict[str, Any]) -> str | None:
    if template is None:
        return None
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    missing = sorted(fields - parameters.keys())
    if missing:
        raise InvalidInput(f"--flow-run-name: {{{missing[0]}}} is not a parameter of this run "
                           f"(parameters: {', '.join(sorted(parameters)) or 'none'})")
    return template.format_map(parameters)


def watch_run(client: PushpoolClient, run: dict, poll_seconds: float = 0.5) -> None:
    """Print every state of the run's history as it grows (also those a quick run passed through between two
    looks) until the run is final; exit 1 when it did not complete."""
    shown = 0
    while True:
        history = client.request("GET", client.ws(f"/flow_runs/{run['id']}/states"))
        for state in history[shown:]:
            note = f" — {state['message']}" if state.get("message") else ""
            when = datetime.fromisoformat(state["timestamp"]).astimezone().strftime("%H:%M:%S")
            console.print(f"{when} {run['name']}: {state['type']} ({state['name']}){note}", highlight=False)
        shown = len(history)
        if history and history[-1]["type"] in FINAL:
            break
        time.sleep(poll_seconds)
    final = client.read_flow_run(run["id"])
    if final.get("console_url"):
        console.print(f"Logs: {final['console_url']}", soft_wrap=True, highlight=False)
    if final["state"]["type"] in FAILED_STATES:
        raise typer.Exit(1)


@deployment_app.command("run")
def run(
    name: str = typer.Argument(..., help="flow-name/deployment-name"),
    param: list[str] = typer.Option(None, "--param", help="KEY=VALUE (JSON values allowed); repeatable."),
    params: str = typer.Option(None, "--params", help="All parameters as a JSON object."),
    job_variable: list[str] = typer.Option(None, "--job-variable", help="KEY=VALUE; repeatable."),
    start_in: str = typer.Option(None, "--start-in", help="e.g. '2 hours'."),
    start_at: str = typer.Option(None, "--start-at", help="ISO 8601 time with a timezone."),
    flow_run_name: str = typer.Option(None, "--flow-run-name", help="e.g. 'customer-{customer_id}'."),
    tag: list[str] = typer.Option(None, "--tag", help="Repeatable."),
    watch: bool = typer.Option(False, "--watch", help="Follow the run; exit 1 if it fails, crashes or is cancelled."),
    output: Output = OutputOption,
) -> None:
    """Create a flow run of a deployment now (or later)."""
    if start_in and start_at:
        raise InvalidInput("--start-in and --start-at: give one of them, not both")
    parameters = {**parse_json_object(params, "--params"), **parse_pairs(param, "--param")}
    body: dict[str, Any] = {"parameters": parameters, "job_variables": parse_pairs(job_variable, "--job-variable"),
                            "tags": tag or []}
    if start_in:
        body["scheduled_time"] = (datetime.now(UTC) + parse_duration(start_in, "--start-in")).isoformat()
    elif start_at:
        body["scheduled_time"] = parse_datetime(start_at, "--start-at").isoformat()
    with get_client() as client:
        deployment = client.read_deployment_by_name(name)
        body["name"] = _run_name(flow_run_name, {**deployment["parameters"], **parameters})
        created = client.create_flow_run(deployment["id"], **body)
        if output is Output.json and not watch:
            emit(created, output, str)
            return
        console.print(f"Created flow run {created['name']!r} ({created['id']}) of {name}, scheduled for "
                      f"{short_time(created['scheduled_time'])} UTC", highlight=False)
        if watch:
            watch_run(client, created)


# --------------------------------------------------------------------------- schedules


def _schedules_body(schedules: list[dict]) -> list[dict]:
    keys = ("id", "cron", "rrule", "anchor_date", "timezone", "parameters", "active", "slug")
    out = []
    for s in schedules:
        item = {k: s[k] for k in keys if s.get(k) is not None}
        if s.get("interval_seconds") is not None:
            item["interval"] = s["interval_seconds"]
        out.append(item)
    return out


@schedule_app.command("ls")
def schedule_ls(name: str = typer.Argument(..., help="flow-name/deployment-name"), output: Output = OutputOption):
    """List a deployment's schedules."""
    with get_client() as client:
        schedules = client.read_deployment_by_name(name)["schedules"]
    emit(schedules, output, lambda ss: table(f"Schedules of {name}", ["id", "schedule", "timezone", "active",
                                                                         "parameters"], [
        (s["id"], describe_schedule(s), s["timezone"], s["active"], json.dumps(s["parameters"]) if s["parameters"]
         else "") for s in ss]))


@schedule_app.command("create")
def schedule_create(
    name: str = typer.Argument(..., help="flow-name/deployment-name"),
    cron: str = typer.Option(None, "--cron"),
    interval: float = typer.Option(None, "--interval", help="Seconds."),
    rrule: str = typer.Option(None, "--rrule"),
    timezone: str = typer.Option("UTC", "--timezone"),
    anchor_date: str = typer.Option(None, "--anchor-date", help="For --interval: ISO time runs align to."),
    param: list[str] = typer.Option(None, "--param", help="Schedule parameter KEY=VALUE; repeatable."),
    inactive: bool = typer.Option(False, "--inactive", help="Create it paused."),
    replace: bool = typer.Option(False, "--replace", help="Replace all existing schedules."),
    yes: bool = YesOption,
) -> None:
    """Add a schedule to a deployment (or replace its schedules)."""
    if sum(x is not None for x in (cron, interval, rrule)) != 1:
        raise InvalidInput("schedule create: give exactly one of --cron, --interval, --rrule")
    new: dict[str, Any] = {"timezone": timezone, "parameters": parse_pairs(param, "--param"), "active": not inactive}
    if cron is not None:
        new["cron"] = cron
    elif interval is not None:
        new["interval"] = interval
        if anchor_date:
            new["anchor_date"] = parse_datetime(anchor_date, "--anchor-date").isoformat()
    else:
        new["rrule"] = rrule
    with get_client() as client:
        deployment = client.read_deployment_by_name(name)
        existing = _schedules_body(deployment["schedules"])
        if replace and existing:
            confirm(f"Replace {len(existing)} schedule(s) of {name}?", yes)
        schedules = [new] if replace else [*existing, new]
        client.request("PATCH", client.ws(f"/deployments/{deployment['id']}"), json={"schedules": schedules})
    console.print(f"Added {describe_schedule({**new, 'interval_seconds': interval})} ({timezone}) to {name}")


def _set_active(name: str | None, schedule_id: str | None, all_: bool, active: bool, yes: bool) -> None:
    verb = "Resume" if active else "Pause"
    if not all_ and not name:
        raise InvalidInput(f"schedule {verb.lower()}: name a deployment or pass --all")
    with get_client() as client:
        if all_:
            deployments = client.request("GET", client.ws("/deployments"))
        else:
            deployments = [client.read_deployment_by_name(name)]
        changes = []
        for d in deployments:
            targets = [s for s in d["schedules"] if (schedule_id in (None, s["id"])) and s["active"] != active]
            if targets:
                changes.append((d, {s["id"] for s in targets}))
        if schedule_id and not changes and not any(s["id"] == schedule_id for d in deployments for s in d["schedules"]):
            raise InvalidInput(f"schedule: {name} has no schedule {schedule_id!r}")
        count = sum(len(ids) for _, ids in changes)
        if not count:
            console.print(f"Nothing to {verb.lower()}: every matching schedule is already "
                          f"{'active' if active else 'paused'}.")
            return
        confirm(f"{verb} {count} schedule(s) of {len(changes)} deployment(s)?", yes)
        for d, ids in changes:
            body = _schedules_body(d["schedules"])
            for item in body:
                if item["id"] in ids:
                    item["active"] = active
            client.request("PATCH", client.ws(f"/deployments/{d['id']}"), json={"schedules": body})
    console.print(f"{verb}d {count} schedule(s) of {len(changes)} deployment(s)")


@schedule_app.command("pause")
def schedule_pause(name: str = typer.Argument(None, help="flow-name/deployment-name"),
                   schedule_id: str = typer.Argument(None, help="One schedule; default all of the deployment."),
                   all_: bool = typer.Option(False, "--all", help="Every schedule of every deployment."),
                   yes: bool = YesOption) -> None:
    """Pause schedules: their future runs are removed until resumed."""
    _set_active(name, schedule_id, all_, False, yes)


@schedule_app.command("resume")
def schedule_resume(name: str = typer.Argument(None, help="flow-name/deployment-name"),
                    schedule_id: str = typer.Argument(None, help="One schedule; default all of the deployment."),
                    all_: bool = typer.Option(False, "--all", help="Every schedule of every deployment."),
                    yes: bool = YesOption) -> None:
    """Resume paused schedules."""
    _set_active(name, schedule_id, all_, True, yes)


@schedule_app.command("delete")
def schedule_delete(name: str = typer.Argument(..., help="flow-name/deployment-name"),
                    schedule_id: str = typer.Argument(...), yes: bool = YesOption) -> None:
    """Delete one schedule of a deployment."""
    with get_client() as client:
        deployment = client.read_deployment_by_name(name)
        body = _schedules_body(deployment["schedules"])
        kept = [s for s in body if s["id"] != schedule_id]
        if len(kept) == len(body):
            raise InvalidInput(f"schedule: {name} has no schedule {schedule_id!r}")
        confirm(f"Delete schedule {schedule_id} of {name}?", yes)
        client.request("PATCH", client.ws(f"/deployments/{deployment['id']}"), json={"schedules": kept})
    console.print(f"Deleted schedule {schedule_id} of {name}")
