"""``Variable``: named JSON values of the workspace, read and set from flows or anywhere.

Inside a deployment's run the run's own token is used (it may read and set variables of its
workspace, not list or delete them); elsewhere, the active profile's key.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pushpool.context import run_or_profile_client
from pushpool.control_plane.errors import NotFound


class Variable:
    @staticmethod
    def get(name: str, default: Any = None) -> Any:
        """The variable's value, or ``default`` when there is none of that name."""
        with run_or_profile_client() as client:
            try:
                return client.request("GET", client.ws(f"/variables/{quote(name, safe='')}"))["value"]
            except NotFound:
                return default

    @staticmethod
    def set(name: str, value: Any, *, tags: list[str] | None = None, overwrite: bool = True) -> Any:
        """Create or replace the variable; with ``overwrite=False`` an existing one is an error (AlreadyExists)."""
        with run_or_profile_client() as client:
            body = {"value": value, "tags": tags or [], "overwrite": overwrite}
            return client.request("PUT", client.ws(f"/variables/{quote(name, safe='')}"), json=body)["value"]
