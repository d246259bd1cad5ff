"""``work-pool`` and ``work-queue`` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from control_plane.errors import InvalidInput
from provisioners.base import NOTHING_TO_PROVISION, provisioner_for
from sdk.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, short_time, table

pool_app = typer.Typer(help="Create and manage work pools.", no_args_is_help=True)
queue_app = typer.Typer(help="Create and manage the work queues of a pool.", no_args_is_help=True)

PoolOption = typer.Option(..., "--pool", "-p", help="Work pool name.")


def _read_template(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"--base-job-template: file {str(path)!r} not found") from None
    except ValueError as exc:
        raise InvalidInput(f"--base-job-template: {path} is not valid JSON ({exc})") from None


def _pool_row(p: dict) -> tuple:
    state = "paused" if p["paused"] else "ready"
    return (p["name"], p["type"], state, p["concurrency_limit"], p["prefetch_seconds"],
            p["late_run_policy"]["mode"], p["id"])


def _provision(pool: dict, yes: bool) -> None:
    pool_type = pool["type"]
    if pool_type in NOTHING_TO_PROVISION:
        console.print(f"Work pool type {pool_type} runs on this machine; there is no infrastructure to provision.")
        return
    provisioner = provisioner_for(pool_type)
    if provisioner is None:
        raise InvalidInput(f"--provision-infra: no provisioner for {pool_type!r} in this release yet; "
                           "create the infrastructure yourself and set it in the pool's job template")
    plan = provisioner.plan(pool["name"], {})
    console.print(table(f"Plan for {pool['name']}", ["resource", "action", "detail"],
                        [(s.resource, s.action.value, s.detail) for s in plan.steps]))
    confirm("Apply this plan?", yes)
    provisioner.apply(plan, lambda step, i, n: console.print(f"[{i}/{n}] {step.resource}: {step.action.value}"))


@pool_app.command("create")
def create(
    name: str,
    type: str = typer.Option(..., "--type", "-t", help="Pool type, e.g. local:push."),
    base_job_template: Path = typer.Option(None, "--base-job-template", help="JSON file with the template."),
    concurrency_limit: int = typer.Option(None, "--concurrency-limit", min=0),
    prefetch_seconds: int = typer.Option(0, "--prefetch-seconds", min=0, help="Submit runs this early."),
    paused: bool = typer.Option(False, "--paused"),
    provision_infra: bool = typer.Option(False, "--provision-infra", help="Create the cloud side of the pool."),
    yes: bool = YesOption,
    output: Output = OutputOption,
) -> None:
    """Create a work pool (with its 'default' queue)."""
    body: dict[str, Any] = {"name": name, "type": type, "paused": paused, "prefetch_seconds": prefetch_seconds}
    if concurrency_limit is not None:
        body["concurrency_limit"] = concurrency_limit
    if base_job_template is not None:
        body["base_job_template"] = _read_template(base_job_template)
    with get_client() as client:
        pool = client.request("POST", client.ws("/work_pools"), json=body)
    if output is Output.json:
        emit(pool, output, str)
    else:
        console.print(f"Created work pool {name!r} of type {type}")
    if provision_infra:
        _provision(pool, yes)


@pool_app.command("ls")
def ls(output: Output = OutputOption) -> None:
    """List work pools."""
    with get_client() as client:
        pools = client.request("GET", client.ws("/work_pools"))
    emit(pools, output, lambda ps: table("Work pools", ["name", "type", "status", "limit", "prefetch s",
                                                         "late runs", "id"], [_pool_row(p) for p in ps]))


@pool_app.command("inspect")
def inspect(name: str, output: Output = OutputOption) -> None:
    """Show a work pool, its template and queues."""
    with get_client() as client:
        pool = client.read_work_pool(name)
        pool["queues"] = client.request("GET", client.ws(f"/work_pools/{name}/queues"))
    emit(pool, Output.json if output is Output.json else output, lambda p: json.dumps(p, indent=2))


def _patch(name: str, **changes: Any) -> dict:
    with get_client() as client:
        return client.request("PATCH", client.ws(f"/work_pools/{name}"), json=changes)


@pool_app.command("update")
def update(
    name: str,
    base_job_template: Path = typer.Option(None, "--base-job-template"),
    description: str = typer.Option(None, "--description"),
    prefetch_seconds: int = typer.Option(None, "--prefetch-seconds", min=0),
    late_runs: str = typer.Option(None, "--late-runs", help="run_all, latest_only or skip_late."),
    skip_after_seconds: int = typer.Option(300, "--skip-after-seconds", min=0, help="With --late-runs skip_late."),
) -> None:
    """Change a pool's template, description, prefetch or late-run policy."""
    changes: dict[str, Any] = {}
    if base_job_template is not None:
        changes["base_job_template"] = _read_template(base_job_template)
    if description is not None:
        changes["description"] = description
    if prefetch_seconds is not None:
        changes["prefetch_seconds"] = prefetch_seconds
    if late_runs is not None:
        changes["late_run_policy"] = {"mode": late_runs, "skip_after_seconds": skip_after_seconds}
    if not changes:
        raise InvalidInput("work-pool update: nothing to change; see --help")
    _patch(name, **changes)
    console.print(f"Updated work pool {name!r}")


@pool_app.command("pause")
def pause(name: str) -> None:
    """Stop dispatching runs from this pool (they wait, and turn Late)."""
    _patch(name, paused=True)
    console.print(f"Paused work pool {name!r}")


@pool_app.command("resume")
def resume(name: str) -> None:
    """Dispatch runs from this pool again."""
    _patch(name, paused=False)
    console.print(f"Resumed work pool {name!r}")


@pool_app.command("set-concurrency-limit")
def set_concurrency_limit(name: str, limit: int = typer.Argument(..., min=0)) -> None:
    """At most LIMIT runs of this pool at once."""
    _patch(name, concurrency_limit=limit)
    console.print(f"Work pool {name!r}: at most {limit} concurrent runs")


@pool_app.command("clear-concurrency-limit")
def clear_concurrency_limit(name: str) -> None:
    """Remove the pool's concurrency limit."""
    _patch(name, clear_concurrency_limit=True)
    console.print(f"Work pool {name!r}: no concurrency limit")


@pool_app.command("delete")
def delete(name: str, yes: bool = YesOption) -> None:
    """Delete a work pool (it must have no deployments)."""
    confirm(f"Delete work pool {name!r} and its queues?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/work_pools/{name}"))
    console.print(f"Deleted work pool {name!r}")


@pool_app.command("get-default-base-job-template")
def get_default_base_job_template(type: str = typer.Option(..., "--type", "-t")) -> None:
    """Print a pool type's default base job template (JSON), to edit and pass to --base-job-template."""
    with get_client() as client:
        typer.echo(json.dumps(client.request("GET", f"/api/pool_types/{type}/base_job_template"), indent=2))


@pool_app.command("preview")
def preview(name: str, hours: float = typer.Option(1.0, "--hours", min=0), output: Output = OutputOption) -> None:
    """The runs the pool will push in the next HOURS hours."""
    until = datetime.now(UTC) + timedelta(hours=hours)
    with get_client() as client:
        client.read_work_pool(name)
        runs = client.list_flow_runs(work_pool=name, state="SCHEDULED", scheduled_before=until.isoformat(),
                                     sort="scheduled_asc", limit=1000)
    emit(runs, output, lambda rs: table(f"Next {hours:g} h of work pool {name!r}", ["scheduled", "run", "deployment"],
                                         [(short_time(r["scheduled_time"]), r["name"],
                                           f"{r['flow_name']}/{r['deployment_name']}") for r in rs]))


@pool_app.command("provision-infra")
def provision_infra(name: str, yes: bool = YesOption) -> None:
    """Create the cloud side of an existing pool (IAM, network, registry, credentials)."""
    with get_client() as client:
        pool = client.read_work_pool(name)
    _provision(pool, yes)


# --------------------------------------------------------------------------- queues


@queue_app.command("create")
def queue_create(name: str, pool: str = PoolOption, priority: int = typer.Option(1, "--priority", min=1),
                 concurrency_limit: int = typer.Option(None, "--concurrency-limit", min=0)) -> None:
    """Create a queue in a pool (lower priority numbers are served first)."""
    with get_client() as client:
        client.request("POST", client.ws(f"/work_pools/{pool}/queues"),
                       json={"name": name, "priority": priority, "concurrency_limit": concurrency_limit})
    console.print(f"Created work queue {name!r} in pool {pool!r} (priority {priority})")


@queue_app.command("ls")
def queue_ls(pool: str = PoolOption, output: Output = OutputOption) -> None:
    """List a pool's queues."""
    with get_client() as client:
        queues = client.request("GET", client.ws(f"/work_pools/{pool}/queues"))
    emit(queues, output, lambda qs: table(f"Queues of {pool!r}", ["name", "priority", "limit", "status", "id"], [
        (q["name"], q["priority"], q["concurrency_limit"], "paused" if q["paused"] else "ready", q["id"]) for q in qs]))


@queue_app.command("inspect")
def queue_inspect(name: str, pool: str = PoolOption) -> None:
    """Show a queue."""
    with get_client() as client:
        typer.echo(json.dumps(client.request("GET", client.ws(f"/work_pools/{pool}/queues/{name}")), indent=2))


def _patch_queue(pool: str, name: str, **changes: Any) -> None:
    with get_client() as client:
        client.request("PATCH", client.ws(f"/work_pools/{pool}/queues/{name}"), json=changes)


@queue_app.command("pause")
def queue_pause(name: str, pool: str = PoolOption) -> None:
    """Stop dispatching runs from this queue."""
    _patch_queue(pool, name, paused=True)
    console.print(f"Paused work queue {name!r}")


@queue_app.command("resume")
def queue_resume(name: str, pool: str = PoolOption) -> None:
    """Dispatch runs from this queue again."""
    _patch_queue(pool, name, paused=False)
    console.print(f"Resumed work queue {name!r}")


@queue_app.command("set-concurrency-limit")
def queue_set_concurrency_limit(name: str, limit: int = typer.Argument(..., min=0), pool: str = PoolOption) -> None:
    """At most LIMIT runs of this queue at once."""
    _patch_queue(pool, name, concurrency_limit=limit)
    console.print(f"Work queue {name!r}: at most {limit} concurrent runs")


@queue_app.command("delete")
def queue_delete(name: str, pool: str = PoolOption, yes: bool = YesOption) -> None:
    """Delete a queue (not 'default')."""
    confirm(f"Delete work queue {name!r} of pool {pool!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/work_pools/{pool}/queues/{name}"))
    console.print(f"Deleted work queue {name!r}")
