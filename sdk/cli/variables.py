"""``variable``: named JSON values of the workspace that flows read and set (``Variable.get``/``set``)."""

from __future__ import annotations

import json

import typer

from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, parse_value, table

variable_app = typer.Typer(help="Workspace variables: values flows read with Variable.get (not for secrets: "
                                "use a block).", no_args_is_help=True)


@variable_app.command("set")
def variable_set(name: str, value: str = typer.Argument(..., help="JSON (42, true, [1,2], {...}) or plain text."),
                 tag: list[str] = typer.Option(None, "--tag", help="Repeatable."),
                 no_overwrite: bool = typer.Option(False, "--no-overwrite", help="Fail if it exists already.")
                 ) -> None:
    """Create or replace a variable."""
    with get_client() as client:
        client.request("PUT", client.ws(f"/variables/{name}"), json={
            "value": parse_value(value), "tags": tag or [], "overwrite": not no_overwrite})
    console.print(f"Set variable {name!r}", highlight=False)


@variable_app.command("get")
def variable_get(name: str) -> None:
    """Print a variable's value as JSON."""
    with get_client() as client:
        typer.echo(json.dumps(client.request("GET", client.ws(f"/variables/{name}"))["value"]))


@variable_app.command("ls")
def variable_ls(output: Output = OutputOption) -> None:
    """Every variable of the workspace."""
    with get_client() as client:
        variables = client.request("GET", client.ws("/variables"))
    emit(variables, output, lambda vs: table("Variables", ["name", "value", "tags"], [
        (v["name"], json.dumps(v["value"])[:60], ", ".join(v["tags"])) for v in vs]))


@variable_app.command("delete")
def variable_delete(name: str, yes: bool = YesOption) -> None:
    """Delete a variable."""
    confirm(f"Delete variable {name!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/variables/{name}"))
    console.print(f"Deleted variable {name!r}", highlight=False)
