"""``block``, ``api-key`` and ``service-account`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pushpool.cli.common import (
    Output,
    OutputOption,
    YesOption,
    confirm,
    console,
    emit,
    get_client,
    parse_duration,
    parse_json_object,
    short_time,
    table,
)
from pushpool.control_plane.errors import InvalidInput

block_app = typer.Typer(help="Credentials and secrets, encrypted at rest (secret fields are masked).",
                        no_args_is_help=True)
api_key_app = typer.Typer(help="Your own API keys.", no_args_is_help=True)
service_account_app = typer.Typer(help="Service accounts (ppb_ keys) of the workspace.", no_args_is_help=True)


def show_issued_key(issued: dict, output: Output, heading: str) -> None:
    """A freshly minted key: the whole answer as JSON, or a heading and the key alone on its own line."""
    if output is Output.json:
        emit(issued, output, str)
        return
    console.print(heading)
    typer.echo(issued["key"])


def _expiry_seconds(expires_in: str | None) -> int | None:
    return int(parse_duration(expires_in, "--expires-in").total_seconds()) if expires_in else None


@block_app.command("ls")
def block_ls(output: Output = OutputOption) -> None:
    """List blocks (secret fields masked)."""
    with get_client() as client:
        blocks = client.request("GET", client.ws("/blocks"))
    emit(blocks, output, lambda bs: table("Blocks", ["name", "type", "fields", "updated (UTC)"], [
        (b["name"], b["type"], ", ".join(sorted(b["data"])), short_time(b["updated"])) for b in bs]))


@block_app.command("inspect")
def block_inspect(name: str) -> None:
    """Show a block (secret fields masked)."""
    with get_client() as client:
        typer.echo(json.dumps(client.request("GET", client.ws(f"/blocks/{name}")), indent=2))


@block_app.command("create")
def block_create(
    name: str,
    type: str = typer.Option(..., "--type", "-t", help="e.g. secret, aws-credentials, modal-credentials."),
    field: list[str] = typer.Option(None, "--field", "-f", help="KEY=VALUE; repeatable."),
    data: str = typer.Option(None, "--data", help="All fields as a JSON object."),
    data_file: Path = typer.Option(None, "--data-file", help="A JSON file with the fields (keeps secrets out of "
                                                             "your shell history)."),
) -> None:
    """Create a block."""
    values = parse_json_object(data, "--data")
    if data_file is not None:
        try:
            values.update(parse_json_object(data_file.read_text(), "--data-file"))
        except FileNotFoundError:
            raise InvalidInput(f"--data-file: {data_file} not found") from None
    for item in field or []:  # raw strings: a credential like "0123" must not become a number
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--field: expected KEY=VALUE, got {item!r}")
        values[key] = value
    with get_client() as client:
        client.request("POST", client.ws("/blocks"), json={"name": name, "type": type, "data": values})
    console.print(f"Created {type} block {name!r}; reference it in a job template as "
                  f"{{{{ pushpool.blocks.{name} }}}}", highlight=False)


@block_app.command("delete")
def block_delete(name: str, yes: bool = YesOption) -> None:
    """Delete a block."""
    confirm(f"Delete block {name!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/blocks/{name}"))
    console.print(f"Deleted block {name!r}")


@api_key_app.command("create")
def api_key_create(name: str = typer.Option("cli", "--name"),
                   expires_in: str = typer.Option(None, "--expires-in", help="e.g. '30 days'."),
                   output: Output = OutputOption) -> None:
    """Create a key for yourself; it is shown once."""
    with get_client() as client:
        issued = client.request("POST", "/api/api_keys", json={"name": name,
                                                               "expires_in_seconds": _expiry_seconds(expires_in)})
    show_issued_key(issued, output, f"API key {name!r} (shown once, store it now):")


@api_key_app.command("ls")
def api_key_ls(output: Output = OutputOption) -> None:
    """Your keys (never their secrets)."""
    with get_client() as client:
        keys = client.request("GET", "/api/api_keys")
    emit(keys, output, lambda ks: table("API keys", ["id", "name", "prefix", "created", "expires", "revoked"], [
        (k["id"], k["name"], k["prefix"] + "…", short_time(k["created"]), short_time(k["expires_at"]),
         short_time(k["revoked_at"])) for k in ks]))


@api_key_app.command("revoke")
def api_key_revoke(key_id: str, yes: bool = YesOption) -> None:
    """Revoke one of your keys."""
    confirm(f"Revoke API key {key_id}?", yes)
    with get_client() as client:
        client.request("DELETE", f"/api/api_keys/{key_id}")
    console.print(f"Revoked API key {key_id}")


def _account_id(client, name_or_id: str) -> str:
    for row in client.request("GET", client.ws("/service_accounts")):
        if name_or_id in (row["account"]["name"], row["account"]["id"]):
            return row["account"]["id"]
    raise InvalidInput(f"service account: no service account {name_or_id!r} in this workspace")


@service_account_app.command("create")
def service_account_create(name: str, role: str = typer.Option("runner", "--role",
                                                               help="owner, developer, runner or viewer."),
                           expires_in: str = typer.Option(None, "--expires-in"), output: Output = OutputOption) -> None:
    """Create a service account and its first key (shown once)."""
    with get_client() as client:
        issued = client.request("POST", client.ws("/service_accounts"), json={
            "name": name, "role": role, "expires_in_seconds": _expiry_seconds(expires_in)})
    show_issued_key(issued, output, f"Service account {name!r} ({role}); its key, shown once:")


@service_account_app.command("ls")
def service_account_ls(output: Output = OutputOption) -> None:
    """Service accounts of the workspace."""
    with get_client() as client:
        rows = client.request("GET", client.ws("/service_accounts"))
    emit(rows, output, lambda rs: table("Service accounts", ["name", "role", "active keys", "id"], [
        (r["account"]["name"], r["role"], sum(k["revoked_at"] is None for k in r["keys"]), r["account"]["id"])
        for r in rs]))


@service_account_app.command("rotate")
def service_account_rotate(name: str, yes: bool = YesOption, output: Output = OutputOption) -> None:
    """Issue a new key and revoke the old ones."""
    confirm(f"Rotate the key of {name!r}? Its current keys stop working at once.", yes)
    with get_client() as client:
        issued = client.request("POST", client.ws(f"/service_accounts/{_account_id(client, name)}/rotate"))
    show_issued_key(issued, output, f"New key of {name!r} (shown once):")


@service_account_app.command("delete")
def service_account_delete(name: str, yes: bool = YesOption) -> None:
    """Delete a service account and its keys."""
    confirm(f"Delete service account {name!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/service_accounts/{_account_id(client, name)}"))
    console.print(f"Deleted service account {name!r}")
