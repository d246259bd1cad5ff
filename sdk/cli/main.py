"""Entry point of the ``pushpool`` command."""

from __future__ import annotations

import sys

import typer

from control_plane.errors import PushpoolError
from sdk.cli import server

app = typer.Typer(name="pushpool", help="pushpool: push work pools, open source.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(server.app, name="server")


def main() -> None:
    try:
        app()
    except PushpoolError as exc:
        typer.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
