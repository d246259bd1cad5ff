"""Automations from Python and from files: ``Automation(...).create()``, ``load_automations(path)``.

The trigger and action classes are the control plane's own (so the SDK validates exactly what the API
will): :class:`EventTrigger`, :class:`RunDeployment`, :class:`SendNotification`,
:class:`CancelFlowRun`, and the shortcuts :func:`PauseDeployment`, :func:`ResumeDeployment`,
:func:`PauseWorkPool`, :func:`ResumeWorkPool`. ``flow.deploy(triggers=[DeploymentTrigger(...)])``
makes automations that run the deployment being deployed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pushpool.client import PushpoolClient
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.event_models import (
    Action,
    CancelFlowRun,
    ChangeDeployment,
    ChangeWorkPool,
    DeploymentTrigger,
    EventTrigger,
    Posture,
    RunDeployment,
    SendNotification,
)

__all__ = ["Automation", "CancelFlowRun", "DeploymentTrigger", "EventTrigger", "PauseDeployment", "PauseWorkPool",
           "Posture", "ResumeDeployment", "ResumeWorkPool", "RunDeployment", "SendNotification", "load_automations"]


def PauseDeployment(deployment: str | None = None) -> ChangeDeployment:  # noqa: N802 - reads like the others
    return ChangeDeployment(type="pause-deployment", deployment=deployment)


def ResumeDeployment(deployment: str | None = None) -> ChangeDeployment:  # noqa: N802
    return ChangeDeployment(type="resume-deployment", deployment=deployment)


def PauseWorkPool(work_pool: str | None = None) -> ChangeWorkPool:  # noqa: N802
    return ChangeWorkPool(type="pause-work-pool", work_pool=work_pool)


def ResumeWorkPool(work_pool: str | None = None) -> ChangeWorkPool:  # noqa: N802
    return ChangeWorkPool(type="resume-work-pool", work_pool=work_pool)


class Automation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    enabled: bool = True
    trigger: EventTrigger = Field(default_factory=EventTrigger)
    actions: list[Action] = Field(min_length=1)

    def create(self, client: PushpoolClient | None = None) -> dict[str, Any]:
        """Create the automation, or replace the one of that name (running it twice changes nothing new)."""
        owned = client is None
        client = client or PushpoolClient()
        try:
            return client.request("PUT", client.ws(f"/automations/{self.name}"),
                                  json=self.model_dump(mode="json", exclude_none=True))
        finally:
            if owned:
                client.close()


def load_automations(path: Path) -> list[Automation]:
    """Automations in a YAML or JSON file: one mapping, a list, or ``{"automations": [...]}``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: not found") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})") from None
    items = raw.get("automations", raw) if isinstance(raw, dict) else raw
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{path}: expected an automation, a list of them, or 'automations:'")
    out = []
    for index, item in enumerate(items):
        try:
            out.append(Automation.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            name = item.get("name") if isinstance(item, dict) else None
            raise InvalidInput(f"{path}: automation {name or index}: {where}: {first['msg']}") from None
    return out
