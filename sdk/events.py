"""``emit_event``: tell the control plane something happened (automations can react to it).

Inside a deployment's run the event is the run's (its resource, unless you name another; the run
is then among the related resources), sent with the run's token; elsewhere it needs a resource and
the active profile's key (a developer's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pushpool.context import run_or_profile_client


def emit_event(event: str, resource: dict[str, str] | None = None, related: list[dict[str, str]] | None = None,
               payload: dict[str, Any] | None = None, occurred: datetime | None = None) -> dict[str, Any]:
    """Emit ``event`` (not a ``pushpool.*`` name) and return it as stored."""
    body: dict[str, Any] = {"event": event, "related": related or [], "payload": payload or {}}
    if resource is not None:
        body["resource"] = resource
    if occurred is not None:
        body["occurred"] = occurred.isoformat()
    with run_or_profile_client() as client:
        return client.request("POST", client.ws("/events"), json=body)
