"""Local profiles: ``$PUSHPOOL_HOME/profiles.toml`` (mode 0600).

A profile is a small table of settings (``PUSHPOOL_API_URL``, ``PUSHPOOL_API_KEY``,
``PUSHPOOL_WORKSPACE``, ...); one of them is active.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from pushpool.control_plane.settings import default_home

DEFAULT_PROFILE = "local"


def home() -> Path:
    return Path(os.environ.get("PUSHPOOL_HOME") or default_home()).expanduser()


def profiles_path() -> Path:
    return home() / "profiles.toml"


def load() -> dict[str, Any]:
    path = profiles_path()
    if not path.exists():
        return {"active": DEFAULT_PROFILE, "profiles": {}}
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    data.setdefault("active", DEFAULT_PROFILE)
    data.setdefault("profiles", {})
    return data


def save(data: dict[str, Any]) -> None:
    path = profiles_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(data, fh)
    os.replace(tmp, path)


def active_profile() -> dict[str, Any]:
    data = load()
    name = os.environ.get("PUSHPOOL_PROFILE") or data["active"]
    return dict(data["profiles"].get(name, {}))


def update_profile(name: str, values: dict[str, Any], *, activate: bool = True) -> None:
    data = load()
    data["profiles"].setdefault(name, {}).update(values)
    if activate:
        data["active"] = name
    save(data)
