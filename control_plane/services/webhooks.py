"""Turning an HTTP request to ``/hooks/<slug>`` into an event, through the webhook's Jinja2 template.

The template sees ``method``, ``headers`` (case-insensitive, without credentials: ``Authorization``,
``Cookie``, ``X-Api-Key`` and the others in ``PUSHPOOL_WEBHOOK_DROPPED_HEADERS``, which are never
stored in an event either) and ``body``:
JSON when the request says JSON, form fields when it is urlencoded, else JSON when it parses, else
the text. It must render a JSON object with at least ``event`` and ``resource``; a missing
``occurred`` or ``id`` is filled, the webhook is added as a related resource, and a missing
``payload`` becomes the request's method, headers and body. Anything that fails (the template, its
JSON, the event's shape) is a ``pushpool.webhook.failed`` event with what came in and what
rendered, and a :class:`WebhookFailed` for the caller (HTTP 400).
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.event_models import Event, Webhook
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.events import related, resource
from pushpool.control_plane.services.sandbox import TemplateFailed, render
from pushpool.control_plane.settings import DROPPED_HEADERS

MAX_BODY = 1_000_000
SLUG_BYTES = 24


class WebhookFailed(InvalidInput):
    """The request could not be turned into an event; the message says why (HTTP 400)."""

    http_status = 400


def new_slug() -> str:
    return secrets.token_urlsafe(SLUG_BYTES)


class Headers(dict):
    """Header names looked up in any case (``headers['Content-Type']`` and ``headers['content-type']``)."""

    def __init__(self, items: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in items.items()})

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def parse_body(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        fields = parse_qs(text, keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
    if kind.endswith("json") or not kind or kind.startswith("text/"):
        try:
            return json.loads(text)
        except ValueError:
            if kind.endswith("json"):
                return text
    return text


def template_context(method: str, headers: dict[str, str], raw: bytes,
                     dropped: tuple[str, ...] | list[str] = DROPPED_HEADERS) -> dict[str, Any]:
    drop = {name.lower() for name in dropped}
    kept = Headers({k: v for k, v in headers.items() if k.lower() not in drop})
    return {"method": method.upper(), "headers": kept, "body": parse_body(raw, kept.get("content-type", ""))}


def received(context: dict[str, Any]) -> dict[str, Any]:
    """What the request brought (method, headers, body) as plain JSON values."""
    return {k: dict(v) if isinstance(v, Headers) else v for k, v in context.items()}


def receive(ctx: ServiceContext, webhook: Webhook, method: str, headers: dict[str, str], raw: bytes) -> Event:
    """The event the request makes (emitted), or WebhookFailed (a failure event is emitted instead)."""
    context = template_context(method, headers, raw[:MAX_BODY], ctx.settings.webhook_dropped_headers)
    rendered: str | None = None
    try:
        if len(raw) > MAX_BODY:
            raise WebhookFailed(f"body: larger than {MAX_BODY} bytes")
        rendered = render(webhook.template, context)
        event = _event_from(ctx, webhook, rendered, context)
    except (TemplateFailed, WebhookFailed) as exc:
        _failed(ctx, webhook, exc.message, context, rendered)
        raise WebhookFailed(exc.message) from None
    ctx.events.add(event)
    return event


def _event_from(ctx: ServiceContext, webhook: Webhook, rendered: str, context: dict[str, Any]) -> Event:
    try:
        fields = json.loads(rendered)
    except ValueError as exc:
        raise WebhookFailed(f"template: did not render JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(fields, dict):
        raise WebhookFailed("template: must render a JSON object with 'event' and 'resource'")
    for required in ("event", "resource"):
        if not fields.get(required):
            raise WebhookFailed(f"template: the rendered event has no {required!r}")
    now = ctx.clock.now()
    fields.setdefault("occurred", now.isoformat())
    fields.setdefault("payload", received(context))
    related_items = list(fields.get("related") or [])
    related_items.append(related("webhook", webhook.id, webhook.name))
    unknown = set(fields) - {"id", "occurred", "event", "resource", "related", "payload"}
    if unknown:
        raise WebhookFailed(f"template: unknown event field(s) {', '.join(sorted(unknown))}")
    try:
        return Event(workspace_id=webhook.workspace_id, received=now, **{**fields, "related": related_items})
    except (ValidationError, TypeError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "event"
        raise WebhookFailed(f"template: the rendered event's {where}: {first['msg']}") from None


def _failed(ctx: ServiceContext, webhook: Webhook, reason: str, context: dict[str, Any], rendered: str | None) -> None:
    ctx.events.emit(webhook.workspace_id, "pushpool.webhook.failed", resource("webhook", webhook.id, webhook.name),
                    payload={"reason": reason, "received": received(context),
                             "rendered": rendered[:10_000] if rendered is not None else None})


def event_grid_validation(headers: dict[str, str], raw: bytes) -> dict[str, str] | None:
    """Azure Event Grid's subscription handshake: echo its validation code."""
    if Headers(headers).get("aeg-event-type") != "SubscriptionValidation":
        return None
    try:
        events = json.loads(raw)
        code = (events[0] if isinstance(events, list) else events)["data"]["validationCode"]
    except (ValueError, LookupError, TypeError):
        raise WebhookFailed("Event Grid validation request without data.validationCode") from None
    return {"validationResponse": str(code)}
