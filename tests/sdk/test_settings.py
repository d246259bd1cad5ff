"""Settings precedence: environment > .env in the working directory > profile > defaults."""

from __future__ import annotations

import pytest

from pushpool import profiles
from pushpool.settings import ClientSettings, setting_sources


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_defaults(in_tmp_cwd):
    s = ClientSettings()
    assert s.api_url is None and s.workspace == "default" and s.request_timeout == 30.0


def test_precedence(in_tmp_cwd, monkeypatch):
    profiles.update_profile("local", {"PUSHPOOL_API_URL": "http://profile", "PUSHPOOL_WORKSPACE": "from-profile",
                                      "PUSHPOOL_REQUEST_TIMEOUT": "5"})
    assert ClientSettings().api_url == "http://profile"
    (in_tmp_cwd / ".env").write_text("PUSHPOOL_API_URL=http://dotenv\n")
    assert ClientSettings().api_url == "http://dotenv"
    monkeypatch.setenv("PUSHPOOL_API_URL", "http://env")
    s = ClientSettings()
    assert (s.api_url, s.workspace, s.request_timeout) == ("http://env", "from-profile", 5.0)
    sources = setting_sources()
    assert sources["PUSHPOOL_API_URL"] == ("http://env", "env")
    assert sources["PUSHPOOL_WORKSPACE"] == ("from-profile", "profile 'local'")
    assert sources["PUSHPOOL_LOGGING_LEVEL"] == ("WARNING", "default")


def test_profile_selected_by_environment_or_dotenv(in_tmp_cwd, monkeypatch):
    profiles.update_profile("a", {"PUSHPOOL_API_URL": "http://a"})
    profiles.update_profile("b", {"PUSHPOOL_API_URL": "http://b"}, activate=False)
    assert ClientSettings().api_url == "http://a"
    (in_tmp_cwd / ".env").write_text("PUSHPOOL_PROFILE=b\n")
    assert ClientSettings().api_url == "http://b"
    monkeypatch.setenv("PUSHPOOL_PROFILE", "a")
    assert ClientSettings().api_url == "http://a"


def test_profiles_file_is_private(in_tmp_cwd):
    profiles.update_profile("local", {"PUSHPOOL_API_KEY": "ppu_secret"})
    assert profiles.profiles_path().stat().st_mode & 0o777 == 0o600
