"""``work-pool`` and ``work-queue`` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from pushpool.cli.common import (
    Output,
    OutputOption,
    YesOption,
    confirm,
    console,
    emit,
    err_console,
    get_client,
    short_time,
    table,
)
from pushpool.cli.provision import deprovision, plan_for, provision, show_plan
from pushpool.client import PushpoolClient
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.services.host_runs import HOST_POOL_TYPES
from pushpool.control_plane.settings import LOOPBACK_HINT, is_loopback_url
from pushpool.provisioners.base import NOTHING_TO_PROVISION

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


RegionOption = typer.Option(None, "--region", help="Cloud region (default: your cloud login's).")
ProfileOption = typer.Option(None, "--profile", help="Cloud CLI profile to provision with.")
AssumeRoleOption = typer.Option(False, "--assume-role", help="AWS: the control plane assumes a role with an external "
                                                             "ID instead of holding an access key.")
DryRunOption = typer.Option(False, "--dry-run", help="Show the plan and change nothing.")
SubscriptionOption = typer.Option(None, "--subscription", help="Azure subscription id "
                                                               "(azure-container-instance:push; default: "
                                                               "AZURE_SUBSCRIPTION_ID).")
CoiledWorkspaceOption = typer.Option(None, "--coiled-workspace", help="Coiled workspace (coiled:push; default: "
                                                                    "your `coiled login`'s).")
ProjectOption = typer.Option(None, "--project", help="Google Cloud project (cloud-run:push; default: "
                                                     "GOOGLE_CLOUD_PROJECT or your login's).")


@pool_app.command("create")
def create(
    name: str,
    type: str = typer.Option(..., "--type", "-t", help="Pool type, e.g. local:push."),
    base_job_template: Path = typer.Option(None, "--base-job-template", help="JSON file with the template."),
    concurrency_limit: int = typer.Option(None, "--concurrency-limit", min=0),
    prefetch_seconds: int = typer.Option(0, "--prefetch-seconds", min=0, help="Submit runs this early."),
    crash_retries: int = typer.Option(0, "--crash-retries", min=0, max=10,
                                      help="Submit a run again when its infrastructure crashed (not a raising flow)."),
    paused: bool = typer.Option(False, "--paused"),
    provision_infra: bool = typer.Option(False, "--provision-infra", help="Create the cloud side of the pool."),
    region: str = RegionOption,
    profile: str = ProfileOption,
    assume_role: bool = AssumeRoleOption,
    project: str = ProjectOption,
    subscription: str = SubscriptionOption,
    coiled_workspace: str = CoiledWorkspaceOption,
    dry_run: bool = DryRunOption,
    yes: bool = YesOption,
    output: Output = OutputOption,
) -> None:
    """Create a work pool (with its 'default' queue), and with --provision-infra its cloud side."""
    options = {"region": region, "profile": profile, "assume_role": assume_role, "project": project,
               "subscription": subscription, "coiled_workspace": coiled_workspace}
    if dry_run:
        if not provision_infra:
            raise InvalidInput("--dry-run: only meaningful with --provision-infra")
        if type not in NOTHING_TO_PROVISION:
            show_plan(plan_for(name, type, options))
        console.print("Dry run: no pool was created and nothing was changed.")
        return
    body: dict[str, Any] = {"name": name, "type": type, "paused": paused, "prefetch_seconds": prefetch_seconds,
                            "crash_retries": crash_retries}
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
    with get_client() as client:
        warn_if_unreachable(client, type)
    if provision_infra:
        with get_client() as client:
            provision(client, pool, options, yes=yes, dry_run=False)


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
        warn_if_unreachable(client, pool["type"])
    emit(pool, Output.json if output is Output.json else output, lambda p: json.dumps(p, indent=2))


def warn_if_unreachable(client: PushpoolClient, pool_type: str) -> None:
    """On stderr: a cloud pool's runs would be told to report to a loopback URL."""
    if pool_type in HOST_POOL_TYPES:
        return
    url = client.health().get("public_api_url")
    if url and is_loopback_url(url):
        err_console.print("[yellow]Warning:[/] " + LOOPBACK_HINT.format(url=url), highlight=False)


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
    crash_retries: int = typer.Option(None, "--crash-retries", min=0, max=10,
                                      help="Submit a run again when its infrastructure crashed (not a raising flow)."),
    crash_retry_delay: int = typer.Option(None, "--crash-retry-delay-seconds", min=0, max=3600,
                                          help="Before the first crash retry; doubles for each further one."),
) -> None:
    """Change a pool's template, description, prefetch, late-run policy or crash retries."""
    changes: dict[str, Any] = {}
    if crash_retries is not None:
        changes["crash_retries"] = crash_retries
    if crash_retry_delay is not None:
        changes["crash_retry_delay_seconds"] = crash_retry_delay
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
def provision_infra(name: str, region: str = RegionOption, profile: str = ProfileOption,
                    assume_role: bool = AssumeRoleOption, project: str = ProjectOption,
                    subscription: str = SubscriptionOption, coiled_workspace: str = CoiledWorkspaceOption,
                    dry_run: bool = DryRunOption, yes: bool = YesOption) -> None:
    """Create the cloud side of an existing pool (IAM, network, registry, credentials); safe to run again."""
    options = {"region": region, "profile": profile, "assume_role": assume_role, "project": project,
               "subscription": subscription, "coiled_workspace": coiled_workspace}
    with get_client() as client:
        provision(client, client.read_work_pool(name), options, yes=yes, dry_run=dry_run)


@pool_app.command("deprovision")
def deprovision_infra(name: str, yes: bool = YesOption) -> None:
    """Remove exactly what provision-infra created for the pool (never what existed before)."""
    with get_client() as client:
        deprovision(client, client.read_work_pool(name), yes=yes)


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


@queue_app.command("update")
def queue_update(
    name: str,
    pool: str = PoolOption,
    priority: int = typer.Option(None, "--priority", min=1, help="Lower numbers are served first."),
    concurrency_limit: int = typer.Option(None, "--concurrency-limit", min=0, help="At most N active runs."),
    no_concurrency_limit: bool = typer.Option(False, "--no-concurrency-limit", help="Remove the limit."),
    description: str = typer.Option(None, "--description"),
    output: Output = OutputOption,
) -> None:
    """Change a queue's priority, concurrency limit or description."""
    if concurrency_limit is not None and no_concurrency_limit:
        raise InvalidInput("--concurrency-limit and --no-concurrency-limit: give one of them")
    changes: dict[str, Any] = {key: value for key, value in (
        ("priority", priority), ("concurrency_limit", concurrency_limit), ("description", description))
        if value is not None}
    if no_concurrency_limit:
        changes["clear_concurrency_limit"] = True
    if not changes:
        raise InvalidInput("nothing to change: give --priority, --concurrency-limit, --no-concurrency-limit or "
                           "--description")
    with get_client() as client:
        updated = client.request("PATCH", client.ws(f"/work_pools/{pool}/queues/{name}"), json=changes)
    if output is Output.json:
        emit(updated, output, str)
        return
    limit = updated["concurrency_limit"]
    console.print(f"Work queue {name!r} of pool {pool!r}: priority {updated['priority']}, "
                  f"concurrency limit {'none' if limit is None else limit}")


@queue_app.command("delete")
def queue_delete(name: str, pool: str = PoolOption, yes: bool = YesOption) -> None:
    """Delete a queue (not 'default')."""
    confirm(f"Delete work queue {name!r} of pool {pool!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/work_pools/{pool}/queues/{name}"))
    console.print(f"Deleted work queue {name!r}")
