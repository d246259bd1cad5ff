"""Automations: a trigger and actions (``pushpool automation create --from-file``), and deployment triggers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.errors import AlreadyExists, InvalidInput, NotFound
from pushpool.control_plane.event_models import Action, Automation, DeploymentTrigger, EventTrigger, RunDeployment
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.sandbox import syntax_error

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["automations"])
COMPARED = {"name", "enabled", "trigger", "actions", "description"}


class AutomationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    enabled: bool = True
    trigger: EventTrigger
    actions: list[Action] = Field(min_length=1)


class AutomationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    description: str | None = None


def _check_templates(body: AutomationIn) -> None:
    """Templates in run-deployment actions must at least parse (rendering happens when it fires)."""
    for index, action in enumerate(body.actions):
        texts = []
        if isinstance(action, RunDeployment):
            texts = _strings(action.parameters) + _strings(action.job_variables)
        elif action.type == "send-notification":
            texts = [action.subject, action.body]  # type: ignore[union-attr]
        for text in texts:
            why = syntax_error(text)
            if why:
                raise InvalidInput(f"actions[{index}]: template {text!r}: {why}")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def load_automation(access: Access, reference: str) -> Automation:
    store = access.ctx.store
    found = store.get_automation(access.workspace_id, reference) or store.get_automation_by_name(
        access.workspace_id, reference)
    if found is None:
        raise NotFound(f"Automation {reference!r} not found")
    return found


@router.post("/automations", response_model=Automation, status_code=status.HTTP_201_CREATED)
def create_automation(body: AutomationIn, access: Access = Depends(workspace_access)):
    access.require(Permission.WRITE)
    _check_templates(body)
    now = access.ctx.clock.now()
    automation = Automation(workspace_id=access.workspace_id, created=now, updated=now, **body.model_dump())
    return access.ctx.store.create_automation(automation)


@router.put("/automations/{reference}", response_model=Automation)
def replace_automation(reference: str, body: AutomationIn, response: Response,
                       access: Access = Depends(workspace_access)):
    """Create or replace by name or id (``automation create`` run twice changes nothing new)."""
    access.require(Permission.WRITE)
    _check_templates(body)
    store, now = access.ctx.store, access.ctx.clock.now()
    existing = store.get_automation(access.workspace_id, reference) or store.get_automation_by_name(
        access.workspace_id, reference)
    if existing is None:
        response.status_code = status.HTTP_201_CREATED
        return store.create_automation(Automation(workspace_id=access.workspace_id, created=now, updated=now,
                                                  **body.model_dump()))
    replaced = Automation(id=existing.id, workspace_id=access.workspace_id, created=existing.created, updated=now,
                          owner_deployment_id=existing.owner_deployment_id, **body.model_dump())
    store.update_automation(replaced)
    return replaced


@router.get("/automations", response_model=list[Automation])
def list_automations(access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    return access.ctx.store.list_automations(access.workspace_id)


@router.get("/automations/{reference}", response_model=Automation)
def read_automation(reference: str, access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    return load_automation(access, reference)


@router.patch("/automations/{reference}", response_model=Automation)
def update_automation(reference: str, body: AutomationPatch, access: Access = Depends(workspace_access)):
    """Pause (``enabled: false``) or resume an automation, or change its description."""
    access.require(Permission.WRITE)
    automation = load_automation(access, reference)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None or k == "description"}
    updated = automation.model_copy(update={**changes, "updated": access.ctx.clock.now()})
    access.ctx.store.update_automation(updated)
    return updated


@router.delete("/automations/{reference}", status_code=status.HTTP_204_NO_CONTENT)
def delete_automation(reference: str, access: Access = Depends(workspace_access)) -> None:
    access.require(Permission.WRITE)
    access.ctx.store.delete_automation(access.workspace_id, load_automation(access, reference).id)


@router.put("/deployments/{deployment_id}/triggers", response_model=list[Automation])
def set_deployment_triggers(deployment_id: str, body: list[DeploymentTrigger],
                            access: Access = Depends(workspace_access)):
    """Replace the automations this deployment's triggers made with ones for ``body`` (each runs it)."""
    access.require(Permission.WRITE)
    store, now = access.ctx.store, access.ctx.clock.now()
    deployment = store.get_deployment(access.workspace_id, deployment_id)
    if deployment is None:
        raise NotFound("Deployment not found")
    wanted = [trigger.automation(deployment, index, now) for index, trigger in enumerate(body)]
    owned = {a.name: a for a in store.list_automations(access.workspace_id) if a.owner_deployment_id == deployment.id}
    made = []
    for automation in wanted:  # the same trigger deployed again is kept as it is (with its counting state)
        same = owned.get(automation.name)
        if same is not None and same.model_dump(include=COMPARED) == automation.model_dump(include=COMPARED):
            made.append(owned.pop(automation.name))
    for old in owned.values():
        store.delete_automation(access.workspace_id, old.id)
    kept = {a.name for a in made}
    for automation in (a for a in wanted if a.name not in kept):
        try:
            made.append(store.create_automation(automation))
        except AlreadyExists:
            raise AlreadyExists(f"Automation {automation.name!r} already exists; give the trigger another name") \
                from None
    return made
