"""``events`` (ls, stream) and ``webhook`` (create, ls, get, toggle, rotate, delete) commands."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from pushpool.cli.common import (
    Output,
    OutputOption,
    YesOption,
    confirm,
    console,
    emit,
    get_client,
    parse_datetime,
    parse_duration,
    short_time,
    table,
)
from pushpool.control_plane.errors import InvalidInput

events_app = typer.Typer(help="What happened: flow-run states, deployments, pools, webhooks, automations.",
                         no_args_is_help=True)
webhook_app = typer.Typer(help="Webhooks: an HTTP call to /hooks/<slug> becomes an event.", no_args_is_help=True)

EventOption = typer.Option(None, "--event", "-e", help="Event name prefix, e.g. pushpool.flow-run.Failed")
ResourceOption = typer.Option(None, "--resource", "-r", help="Resource id; * matches anything, e.g. "
                                                              "'pushpool.flow-run.*'")
RelatedOption = typer.Option(None, "--related", help="Id of a related resource, e.g. 'pushpool.deployment.<id>'")


def _time(text: str | None, option: str) -> str | None:
    """An ISO time, or a duration meaning that long ago ('1 hour')."""
    if text is None:
        return None
    if text[:1].isdigit() and ("T" in text or "-" in text[:5]):
        return parse_datetime(text, option).isoformat()
    return (datetime.now(UTC) - parse_duration(text, option)).isoformat()


def _row(event: dict) -> tuple:
    resource = event["resource"]
    return (short_time(event["occurred"]), event["event"], resource.get("pushpool.resource.name", ""),
            resource["pushpool.resource.id"])


@events_app.command("ls")
def events_ls(event: str = EventOption, resource: str = ResourceOption, related: str = RelatedOption,
              since: str = typer.Option(None, "--since", help="ISO time, or how long ago: '2 hours'."),
              until: str = typer.Option(None, "--until", help="ISO time, or how long ago."),
              limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
              output: Output = OutputOption) -> None:
    """Recent events, newest first."""
    params = {"event": event, "resource": resource, "related": related, "since": _time(since, "--since"),
              "until": _time(until, "--until"), "limit": limit}
    with get_client() as client:
        page = client.request("GET", client.ws("/events"), params={k: v for k, v in params.items() if v is not None})
    emit(page["events"], output, lambda events: table("Events", ["occurred (UTC)", "event", "name", "resource"],
                                                      [_row(e) for e in events]))


@events_app.command("stream")
def events_stream(event: str = EventOption, resource: str = ResourceOption, related: str = RelatedOption,
                  since: str = typer.Option(None, "--since", help="Start this long ago (default: now)."),
                  interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between polls."),
                  count: int = typer.Option(0, "--count", min=0, help="Stop after this many events (0: never)."),
                  output: Output = OutputOption) -> None:
    """Follow new events as they happen (Ctrl-C stops); --output json prints one JSON object per line."""
    params: dict[str, Any] = {"event": event, "resource": resource, "related": related, "order": "asc", "limit": 200,
                              "since": _time(since, "--since") or datetime.now(UTC).isoformat()}
    seen = 0
    with get_client() as client:
        try:
            while True:
                page = client.request("GET", client.ws("/events"),
                                      params={k: v for k, v in params.items() if v is not None})
                for item in page["events"]:
                    if output is Output.json:
                        typer.echo(json.dumps(item))
                    else:
                        occurred, name, label, resource_id = _row(item)
                        console.print(f"{occurred}  [bold]{name}[/bold]  {label or resource_id}", highlight=False)
                    seen += 1
                    if count and seen >= count:
                        return
                if page["events"]:
                    params["after"] = page["last"]
                if page["next"] is None:
                    time.sleep(interval)
        except KeyboardInterrupt:
            return


# --------------------------------------------------------------------------- webhooks


def _webhook_table(client, hooks: list[dict]) -> Any:
    return table("Webhooks", ["name", "enabled", "url", "service account", "updated (UTC)"], [
        (h["name"], "yes" if h["enabled"] else "no", client.api_url + h["path"], h["service_account_id"] or "",
         short_time(h["updated"])) for h in hooks])


@webhook_app.command("create")
def webhook_create(name: str,
                   template: str = typer.Option(None, "--template", "-t", help="Jinja2 rendering the event's JSON."),
                   template_file: Path = typer.Option(None, "--template-file", help="The template in a file."),
                   service_account: str = typer.Option(None, "--service-account", "-s",
                                                       help="Require this service account's API key."),
                   description: str = typer.Option(None, "--description"),
                   output: Output = OutputOption) -> None:
    """Create a webhook; prints the URL to call."""
    if (template is None) == (template_file is None):
        raise InvalidInput("--template: give the template, or --template-file (one of them)")
    if template_file is not None:
        try:
            template = template_file.read_text()
        except FileNotFoundError:
            raise InvalidInput(f"--template-file: {template_file} not found") from None
    with get_client() as client:
        created = client.request("POST", client.ws("/webhooks"), json={
            "name": name, "template": template, "service_account": service_account, "description": description})
        url = client.api_url + created["path"]
    if output is Output.json:
        emit({**created, "url": url}, output, str)
        return
    console.print(f"Created webhook {name!r}. Call it with any method, e.g.:", highlight=False)
    typer.echo(f"  curl -X POST {url} -d key=value")


@webhook_app.command("ls")
def webhook_ls(output: Output = OutputOption) -> None:
    """List webhooks and their URLs."""
    with get_client() as client:
        hooks = client.request("GET", client.ws("/webhooks"))
        emit(hooks, output, lambda hs: _webhook_table(client, hs))


@webhook_app.command("get")
def webhook_get(name: str, output: Output = OutputOption) -> None:
    """Show a webhook (template and URL)."""
    with get_client() as client:
        hook = client.request("GET", client.ws(f"/webhooks/{name}"))
        hook["url"] = client.api_url + hook["path"]
    emit(hook, Output.json if output is Output.table else output, str)


@webhook_app.command("toggle")
def webhook_toggle(name: str) -> None:
    """Disable an enabled webhook (its URL answers 404), or enable a disabled one."""
    with get_client() as client:
        hook = client.request("GET", client.ws(f"/webhooks/{name}"))
        changed = client.request("PATCH", client.ws(f"/webhooks/{name}"), json={"enabled": not hook["enabled"]})
    console.print(f"Webhook {name!r} is now {'enabled' if changed['enabled'] else 'disabled'}", highlight=False)


@webhook_app.command("rotate")
def webhook_rotate(name: str, yes: bool = YesOption) -> None:
    """Give the webhook a new URL; the old one stops working at once."""
    confirm(f"Rotate the URL of webhook {name!r}? Callers of the old URL will get 404.", yes)
    with get_client() as client:
        rotated = client.request("POST", client.ws(f"/webhooks/{name}/rotate"))
        url = client.api_url + rotated["path"]
    console.print(f"Webhook {name!r} has a new URL:", highlight=False)
    typer.echo(f"  {url}")


@webhook_app.command("delete")
def webhook_delete(name: str, yes: bool = YesOption) -> None:
    """Delete a webhook."""
    confirm(f"Delete webhook {name!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/webhooks/{name}"))
    console.print(f"Deleted webhook {name!r}", highlight=False)
