"""Entry point of the ``pushpool`` command: every command group, and one-line errors."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError

from pushpool.cli import (
    admin,
    automations,
    backfills,
    concurrency_limits,
    config,
    control_plane,
    deploy,
    deployments,
    events,
    flow_runs,
    flows,
    images,
    members,
    server,
    task_runs,
    variables,
    work_pools,
)
from pushpool.control_plane.errors import PushpoolError

app = typer.Typer(name="pushpool", help="pushpool: push work pools, open source.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode="rich")
app.add_typer(server.app, name="server")
app.command("dashboard")(server.dashboard)
app.add_typer(control_plane.control_plane_app, name="control-plane")
app.command("login")(config.login)
app.add_typer(config.workspace_app, name="workspace")
app.add_typer(config.config_app, name="config")
app.add_typer(config.profile_app, name="profile")
app.add_typer(work_pools.pool_app, name="work-pool")
app.add_typer(work_pools.queue_app, name="work-queue")
app.add_typer(deployments.deployment_app, name="deployment")
app.add_typer(backfills.backfill_app, name="backfill")
app.add_typer(flows.flow_app, name="flow")
app.add_typer(flow_runs.flow_run_app, name="flow-run")
app.add_typer(task_runs.task_run_app, name="task-run")
app.add_typer(concurrency_limits.concurrency_limit_app, name="concurrency-limit")
app.add_typer(admin.block_app, name="block")
app.add_typer(variables.variable_app, name="variable")
app.add_typer(admin.api_key_app, name="api-key")
app.add_typer(admin.service_account_app, name="service-account")
app.add_typer(members.user_app, name="user")
app.add_typer(members.member_app, name="member")
app.command("whoami")(members.whoami)
app.add_typer(events.events_app, name="events")
app.add_typer(events.webhook_app, name="webhook")
app.add_typer(automations.automation_app, name="automation")
app.add_typer(images.image_app, name="image")
app.command("deploy")(deploy.deploy)
app.command("init")(deploy.init)


@app.command("version")
def version() -> None:
    """Print the pushpool version."""
    from pushpool.control_plane.app import VERSION

    typer.echo(VERSION)


def main() -> None:
    """Run the CLI; any pushpool error becomes one line on stderr and exit code 1."""
    from pushpool.settings import ClientSettings

    try:
        level = ClientSettings().logging_level
    except Exception:  # a broken setting must not hide the command's own error
        level = "WARNING"
    logging.basicConfig(level=level.upper() if level.upper() in logging._nameToLevel else "WARNING")
    try:
        app(standalone_mode=True)
    except PushpoolError as exc:
        typer.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(1)
    except ValidationError as exc:  # a PUSHPOOL_* setting of the environment that does not hold
        typer.secho(f"Error: {settings_error(exc)}", fg="red", err=True)
        sys.exit(1)


def settings_error(exc: ValidationError) -> str:
    """One line per broken setting, named as its environment variable."""
    prefix = "PUSHPOOL_" if exc.title in ("Settings", "ClientSettings") else ""
    return "; ".join(f"{prefix}{'.'.join(str(p) for p in error['loc']).upper() if prefix else error['loc']}: "
                     f"{error['msg']}" for error in exc.errors(include_url=False))


if __name__ == "__main__":
    main()
