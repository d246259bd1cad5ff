"""The CLI as a user runs it against a live embedded server, for the provision → run → deprovision tests."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pushpool.cli.main import app
from pushpool.control_plane.errors import PushpoolError


@pytest.fixture
def cli(live, monkeypatch):
    """``cli(*args)`` → the output of a command that must succeed; ``cli(*args, ok=False)`` → the one-line
    error of a command that must fail with a pushpool error."""
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> str:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        if ok:
            assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
            return result.output
        # main() prints a pushpool error as one line on stderr and exits 1: here it is the exception
        assert isinstance(result.exception, PushpoolError), f"{args}: {result.output}\n{result.exception!r}"
        return str(result.exception)

    return invoke
