"""``flow ls``: the flows of the workspace, each with its deployments."""

from __future__ import annotations

import typer

from pushpool.cli.common import Output, OutputOption, emit, get_client, short_time, table

flow_app = typer.Typer(help="Flows of the workspace (a flow is known by its deployments).", no_args_is_help=True)


@flow_app.command("ls")
def flow_ls(output: Output = OutputOption) -> None:
    """Every flow with a deployment, and its deployments."""
    with get_client() as client:
        flows = client.request("GET", client.ws("/flows"))
    emit(flows, output, lambda fs: table("Flows", ["name", "deployments", "updated (UTC)"], [
        (f["name"], ", ".join(f["deployments"]), short_time(f["updated"])) for f in fs]))
