"""Webhooks: managed under a workspace; called by anyone (or a service account's key) at ``/hooks/<slug>``."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from pushpool.control_plane.api.deps import Access, authenticate, workspace_access
from pushpool.control_plane.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from pushpool.control_plane.event_models import Webhook
from pushpool.control_plane.models import ActorKind
from pushpool.control_plane.services import webhooks as hooks
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.services.sandbox import syntax_error

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["webhooks"])
hooks_router = APIRouter(tags=["webhooks"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    template: str = Field(min_length=1)
    description: str | None = None
    #: Name or id of a service account of this workspace whose API key each request must carry.
    service_account: str | None = None
    enabled: bool = True


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str | None = None
    description: str | None = None
    enabled: bool | None = None


class WebhookOut(BaseModel):
    id: str
    name: str
    description: str | None
    template: str
    enabled: bool
    slug: str
    #: The path to call (prefix it with the server's URL).
    path: str
    service_account_id: str | None
    created: datetime
    updated: datetime


def webhook_out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(**webhook.model_dump(exclude={"workspace_id"}), path=f"/hooks/{webhook.slug}")


def _check_template(template: str) -> None:
    why = syntax_error(template)
    if why:
        raise InvalidInput(f"template: {why}")


def _service_account(access: Access, reference: str | None) -> str | None:
    if reference is None:
        if access.workspace.require_webhook_service_account:
            raise InvalidInput("service_account: this workspace requires every webhook to name a service account "
                               "whose API key its callers send")
        return None
    for account in access.ctx.store.list_service_accounts(access.workspace_id):
        if reference in (account.id, account.name):
            return account.id
    raise InvalidInput(f"service_account: no service account {reference!r} in this workspace")


def load_webhook(access: Access, name: str) -> Webhook:
    webhook = access.ctx.store.get_webhook(access.workspace_id, name)
    if webhook is None:
        raise NotFound(f"Webhook {name!r} not found")
    return webhook


@router.post("/webhooks", response_model=WebhookOut, status_code=status.HTTP_201_CREATED)
def create_webhook(body: WebhookIn, access: Access = Depends(workspace_access)):
    access.require(Permission.WRITE)
    _check_template(body.template)
    now = access.ctx.clock.now()
    webhook = Webhook(workspace_id=access.workspace_id, name=body.name, description=body.description,
                      template=body.template, enabled=body.enabled, slug=hooks.new_slug(),
                      service_account_id=_service_account(access, body.service_account), created=now, updated=now)
    return webhook_out(access.ctx.store.create_webhook(webhook))


@router.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    return [webhook_out(w) for w in access.ctx.store.list_webhooks(access.workspace_id)]


@router.get("/webhooks/{name}", response_model=WebhookOut)
def read_webhook(name: str, access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    return webhook_out(load_webhook(access, name))


@router.patch("/webhooks/{name}", response_model=WebhookOut)
def update_webhook(name: str, body: WebhookPatch, access: Access = Depends(workspace_access)):
    access.require(Permission.WRITE)
    webhook = load_webhook(access, name)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None or k == "description"}
    if "template" in changes:
        _check_template(changes["template"])
    updated = webhook.model_copy(update={**changes, "updated": access.ctx.clock.now()})
    access.ctx.store.update_webhook(updated)
    return webhook_out(updated)


@router.post("/webhooks/{name}/rotate", response_model=WebhookOut)
def rotate_webhook(name: str, access: Access = Depends(workspace_access)):
    """A new slug (URL); the old one stops working at once."""
    access.require(Permission.WRITE)
    webhook = load_webhook(access, name)
    updated = webhook.model_copy(update={"slug": hooks.new_slug(), "updated": access.ctx.clock.now()})
    access.ctx.store.update_webhook(updated)
    return webhook_out(updated)


@router.delete("/webhooks/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(name: str, access: Access = Depends(workspace_access)) -> None:
    access.require(Permission.WRITE)
    access.ctx.store.delete_webhook(access.workspace_id, load_webhook(access, name).id)


# --------------------------------------------------------------------------- the public side


async def call_webhook(slug: str, request: Request) -> Response:
    """Call a webhook: the request becomes an event (any method; no API key unless the webhook names a
    service account)."""
    ctx: ServiceContext = request.app.state.ctx
    raw = await request.body()
    headers = dict(request.headers)
    return await run_in_threadpool(_call, ctx, slug, request, headers, raw)


for _method in METHODS:  # one route per method, so each has its own operation id in the OpenAPI document
    hooks_router.add_api_route("/hooks/{slug}", call_webhook, methods=[_method], status_code=status.HTTP_202_ACCEPTED,
                               operation_id=f"call_webhook_{_method.lower()}", summary="Call a webhook")


def _call(ctx: ServiceContext, slug: str, request: Request, headers: dict[str, str], raw: bytes) -> Response:
    webhook = ctx.store.get_webhook_by_slug(slug)
    if webhook is None or not webhook.enabled:
        raise NotFound("Webhook not found")
    workspace = ctx.store.get_workspace(webhook.workspace_id)
    if workspace is None:
        raise NotFound("Webhook not found")
    if webhook.service_account_id is not None:
        caller = authenticate(request, ctx)
        if caller.actor is None or caller.actor.kind is not ActorKind.SERVICE_ACCOUNT or \
                caller.actor.id != webhook.service_account_id:
            raise Unauthorized("unknown")
    elif workspace.require_webhook_service_account:
        raise Forbidden("This workspace requires webhooks to name a service account; update the webhook")
    origin = headers.get("webhook-request-origin")
    if request.method == "OPTIONS" and origin:  # CloudEvents' abuse-protection handshake
        return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
    validation = hooks.event_grid_validation(headers, raw)
    if validation is not None:
        return JSONResponse(validation, status_code=200)
    event = hooks.receive(ctx, webhook, request.method, headers, raw)
    return JSONResponse({"id": event.id, "event": event.event}, status_code=status.HTTP_202_ACCEPTED)
