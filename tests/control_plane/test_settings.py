"""The control plane's settings read ``PUSHPOOL_*`` variables themselves (no pydantic-settings on the cold start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pushpool.cli.main import settings_error
from pushpool.control_plane.settings import Settings, environment_values


def test_the_environment_gives_each_setting_as_its_type(monkeypatch):
    monkeypatch.setenv("PUSHPOOL_PORT", "4321")
    monkeypatch.setenv("pushpool_log_format", "json")  # any case, as before
    monkeypatch.setenv("PUSHPOOL_BOOTSTRAP", "false")
    monkeypatch.setenv("PUSHPOOL_HOST_HIDDEN_PATHS", "/srv/a, /srv/b,")
    monkeypatch.setenv("PUSHPOOL_TICK_TOKEN", "t" * 32)
    monkeypatch.setenv("PUSHPOOL_EVENTS_RETENTION_DAYS", "1.5")
    monkeypatch.setenv("PUSHPOOL_PROFILE", "the CLI's, not the server's")  # unknown here: ignored
    settings = Settings()
    assert (settings.port, settings.log_format, settings.bootstrap) == (4321, "json", False)
    assert settings.host_hidden_paths == [Path("/srv/a"), Path("/srv/b")]
    assert settings.tick_token is not None and settings.tick_token.get_secret_value() == "t" * 32
    assert settings.events_retention_days == 1.5
    assert "t" * 32 not in repr(settings)


def test_arguments_win_over_the_environment_and_defaults_hold(monkeypatch):
    monkeypatch.setenv("PUSHPOOL_STORE", "dynamodb")
    monkeypatch.delenv("PUSHPOOL_PORT", raising=False)
    settings = Settings(store="sqlite", host="0.0.0.0")
    assert (settings.store, settings.host, settings.port) == ("sqlite", "0.0.0.0", 4200)
    assert "authorization" in settings.webhook_dropped_headers


def test_a_value_that_does_not_hold_names_its_variable(monkeypatch):
    monkeypatch.setenv("PUSHPOOL_PORT", "forty-two")
    monkeypatch.setenv("PUSHPOOL_TICK_TOKEN", "short")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = settings_error(caught.value)
    assert "PUSHPOOL_PORT:" in message and "PUSHPOOL_TICK_TOKEN:" in message and "32 characters" in message


def test_environment_values_reads_only_the_names_asked_for():
    environ = {"PUSHPOOL_PORT": "1", "pushpool_host": "h", "PUSHPOOL_OTHER": "x", "PORT": "2"}
    assert environment_values(["port", "host"], environ) == {"port": "1", "host": "h"}


def test_settings_import_no_pydantic_settings_and_no_asyncio():
    """pydantic-settings imports asyncio, argparse and its sources; every Lambda cold start paid for them."""
    probe = ("import sys, pushpool.control_plane.lambda_handler, pushpool.control_plane.settings; "
             "print(sorted({'pydantic_settings', 'asyncio', 'argparse', 'dotenv'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
