"""Client settings: ``PUSHPOOL_*`` with precedence environment > ``.env`` in the working
directory > the active profile (``$PUSHPOOL_HOME/profiles.toml``) > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pushpool import profiles

#: Setting names a profile may hold, as written in profiles.toml (and the environment).
SETTING_NAMES = ("PUSHPOOL_API_URL", "PUSHPOOL_API_KEY", "PUSHPOOL_WORKSPACE", "PUSHPOOL_LOGGING_LEVEL",
                 "PUSHPOOL_REQUEST_TIMEOUT", "PUSHPOOL_BUILD_NAMESPACE")


def selected_profile_name() -> str:
    """PUSHPOOL_PROFILE from the environment, then .env, then the profile file's active one."""
    name = os.environ.get("PUSHPOOL_PROFILE")
    if not name and Path(".env").is_file():
        name = dotenv_values(".env").get("PUSHPOOL_PROFILE")
    return name or profiles.load()["active"]


class ProfileSource(PydanticBaseSettingsSource):
    """Values of the selected profile, lowest priority before defaults."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        data = profiles.load()["profiles"].get(selected_profile_name(), {})
        self._values = {k.removeprefix("PUSHPOOL_").lower(): v for k, v in data.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields and v is not None}


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUSHPOOL_", env_file=".env", extra="ignore")

    api_url: str | None = Field(default=None, description="URL of the pushpool API.")
    api_key: str | None = Field(default=None, description="API key (ppu_… or ppb_…).")
    workspace: str = Field(default="default", description="Workspace name or id.")
    profile: str | None = Field(default=None, description="Profile to use (PUSHPOOL_PROFILE).")
    logging_level: str = Field(default="WARNING", description="Log level of the SDK and CLI.")
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds before an API request times out.")
    build_namespace: str | None = Field(default=None, description="Default registry namespace for images.")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, ProfileSource(settings_cls)


def setting_sources() -> dict[str, tuple[Any, str]]:
    """Each setting's effective value and where it came from (for ``pushpool config view``)."""
    profile = profiles.load()["profiles"].get(selected_profile_name(), {})
    dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
    effective = ClientSettings()
    out: dict[str, tuple[Any, str]] = {}
    for name in SETTING_NAMES:
        field = name.removeprefix("PUSHPOOL_").lower()
        value = getattr(effective, field)
        if name in os.environ:
            source = "env"
        elif name in dotenv:
            source = ".env"
        elif name in profile:
            source = f"profile {selected_profile_name()!r}"
        else:
            source = "default"
        out[name] = (value, source)
    return out
