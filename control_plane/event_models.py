"""Records of events, webhooks and automations (the rest of the records are in :mod:`control_plane.models`).

An **event** says something happened to a **resource** (a dict of labels; ``pushpool.resource.id``
names it, e.g. ``pushpool.flow-run.<id>``), with **related** resources (each with a
``pushpool.resource.role``: deployment, flow, work-pool, work-queue, tag, webhook, …) and a payload.
A **webhook** turns an HTTP request into an event through a sandboxed Jinja2 template. An
**automation** is a trigger (which events, how many, within what time, or their absence) and
actions (run a deployment, notify, pause or resume, cancel).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pushpool.control_plane.models import Record, UtcDatetime, new_id

RESOURCE_ID = "pushpool.resource.id"
RESOURCE_ROLE = "pushpool.resource.role"
RESOURCE_NAME = "pushpool.resource.name"


def _check_resource(resource: dict[str, str], where: str) -> dict[str, str]:
    if not isinstance(resource.get(RESOURCE_ID), str) or not resource[RESOURCE_ID]:
        raise ValueError(f"{where} needs a '{RESOURCE_ID}' label")
    return {str(k): str(v) for k, v in resource.items()}


class Event(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    occurred: UtcDatetime
    event: str = Field(min_length=1, max_length=1024)
    resource: dict[str, str]
    related: list[dict[str, str]] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    received: UtcDatetime

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_resource(value, "resource")

    @field_validator("related")
    @classmethod
    def _related(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        out = []
        for item in value:
            checked = _check_resource(item, "each related resource")
            if not checked.get(RESOURCE_ROLE):
                raise ValueError(f"each related resource needs a '{RESOURCE_ROLE}' label")
            out.append(checked)
        return out

    @property
    def resource_id(self) -> str:
        return self.resource[RESOURCE_ID]

    def related_of_role(self, role: str) -> list[dict[str, str]]:
        return [r for r in self.related if r.get(RESOURCE_ROLE) == role]


class EventFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Event names starting with this (``pushpool.flow-run.``) — or equal to it.
    event_prefix: str | None = None
    #: ``pushpool.resource.id`` pattern; ``*`` matches any run of characters.
    resource_id: str | None = None
    #: Some related resource's ``pushpool.resource.id`` matches this pattern (``*`` wildcards).
    related_id: str | None = None
    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    #: Oldest first (a stream) or newest first (a listing).
    ascending: bool = False
    #: Keyset cursor: ``occurred|id`` of the last event of the previous page.
    after: str | None = None


class Webhook(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    name: str
    description: str | None = None
    template: str
    enabled: bool = True
    slug: str
    #: When set, requests must carry an API key of this service account.
    service_account_id: str | None = None
    created: UtcDatetime
    updated: UtcDatetime


# --------------------------------------------------------------------------- automations


class Posture(StrEnum):
    REACTIVE = "Reactive"
    PROACTIVE = "Proactive"


Labels = dict[str, str | list[str]]


class EventTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["event"] = "event"
    #: Labels the event's resource must have (values may use ``*``; a list means any of them).
    match: Labels = Field(default_factory=dict)
    #: Labels some related resource must have (all of them, on one related resource).
    match_related: Labels = Field(default_factory=dict)
    #: Event names that count (``*`` wildcards); empty: every event.
    expect: list[str] = Field(default_factory=list)
    #: Event names that must come first: they arm a bucket (Reactive) or open the window (Proactive).
    after: list[str] = Field(default_factory=list)
    posture: Posture = Posture.REACTIVE
    threshold: int = Field(default=1, ge=1, le=10_000)
    within: float = Field(default=0, ge=0, le=30 * 86400)
    #: Resource labels that split the counting into buckets (``pushpool.resource.id``: one per run).
    for_each: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _proactive_needs_a_window(self) -> EventTrigger:
        if self.posture is Posture.PROACTIVE:
            if self.within <= 0:
                raise ValueError("trigger.within: a Proactive trigger needs a window in seconds (within > 0)")
            if not self.after:
                raise ValueError("trigger.after: a Proactive trigger needs the events that start its window")
        return self


class RunDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["run-deployment"] = "run-deployment"
    #: ``flow/name`` or an id; None: the deployment related to the triggering event.
    deployment: str | None = None
    #: Values may be Jinja templates (``{{ flow_run.parameters.x }}``); rendered in the sandbox.
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)


class SendNotification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["send-notification"] = "send-notification"
    #: A block of type ``slack-webhook`` or ``webhook`` holding the URL (a secret).
    block: str
    subject: str = "{{ event.event }} on {{ event.resource['pushpool.resource.name'] }}"
    body: str = "{{ event.event }} at {{ event.occurred }}"


class ChangeDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["pause-deployment", "resume-deployment"]
    deployment: str | None = None


class ChangeWorkPool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["pause-work-pool", "resume-work-pool"]
    work_pool: str | None = None


class CancelFlowRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["cancel-flow-run"] = "cancel-flow-run"
    #: None: the flow run the event is about (or related to).
    flow_run_id: str | None = None


Action = Annotated[RunDeployment | SendNotification | ChangeDeployment | ChangeWorkPool | CancelFlowRun,
                   Field(discriminator="type")]


class Automation(Record):
    id: str = Field(default_factory=new_id)
    workspace_id: str
    name: str
    description: str | None = None
    enabled: bool = True
    trigger: EventTrigger
    actions: list[Action] = Field(min_length=1)
    #: Set for the automations a deployment's ``triggers`` made (replaced when it is deployed again).
    owner_deployment_id: str | None = None
    created: UtcDatetime
    updated: UtcDatetime


class DeploymentTrigger(EventTrigger):
    """A trigger that runs the deployment it belongs to (``flow.deploy(triggers=[...])``, ``triggers:`` in
    pushpool.yaml); its parameters and job variables may be templates like a run-deployment action's."""

    name: str | None = None
    enabled: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)

    def automation(self, deployment: Any, index: int, now: Any) -> Automation:
        trigger = EventTrigger(**self.model_dump(exclude={"name", "enabled", "parameters", "job_variables"}))
        return Automation(workspace_id=deployment.workspace_id, name=self.name or
                          f"{deployment.full_name} trigger {index + 1}", enabled=self.enabled,
                          owner_deployment_id=deployment.id, created=now, updated=now, trigger=trigger,
                          actions=[RunDeployment(deployment=deployment.id, parameters=self.parameters,
                                                 job_variables=self.job_variables)])


class TriggerBucket(Record):
    """The counting state of one automation for one ``for_each`` key."""

    automation_id: str
    key: str
    workspace_id: str
    count: int = 0
    #: Reactive: the first counted event's time. Proactive: when the window opened.
    start: UtcDatetime | None = None
    #: Proactive: fire when the window closes (this time) without enough expected events.
    deadline: UtcDatetime | None = None
    #: Reactive with ``after``: the bucket is armed.
    armed: bool = False
    #: The event that opened the bucket (for the actions' templates when a Proactive trigger fires).
    opening_event: dict[str, Any] | None = None
    version: int = 0
