"""The ``pushpool`` command-line interface (typer + rich)."""
