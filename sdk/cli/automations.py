"""``automation`` commands: create from a YAML or JSON file, ls, inspect, pause, resume, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pushpool.automations import load_automations
from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, short_time, table
from pushpool.control_plane.errors import InvalidInput

automation_app = typer.Typer(help="Automations: when events happen (or do not), run, notify, pause or cancel.",
                             no_args_is_help=True)


def _trigger_summary(trigger: dict[str, Any]) -> str:
    expect = ", ".join(trigger.get("expect") or ["any event"])
    if trigger.get("posture") == "Proactive":
        return f"no {expect} within {trigger['within']:g}s of {', '.join(trigger['after'])}"
    count = f"{trigger['threshold']}× " if trigger.get("threshold", 1) > 1 else ""
    window = f" within {trigger['within']:g}s" if trigger.get("within") else ""
    return f"{count}{expect}{window}"


@automation_app.command("create")
def automation_create(from_file: Path = typer.Option(..., "--from-file", "-f",
                                                     help="YAML or JSON: one automation, a list, or 'automations:'."),
                      output: Output = OutputOption) -> None:
    """Create the automations in a file (one of the same name is replaced: running it twice changes nothing)."""
    automations = load_automations(from_file)
    with get_client() as client:
        made = [a.create(client) for a in automations]
    if output is Output.json:
        emit(made, output, str)
        return
    for automation in made:
        console.print(f"Automation {automation['name']!r}: {_trigger_summary(automation['trigger'])} → "
                      f"{', '.join(a['type'] for a in automation['actions'])}", highlight=False)


@automation_app.command("ls")
def automation_ls(output: Output = OutputOption) -> None:
    """List automations."""
    with get_client() as client:
        found = client.request("GET", client.ws("/automations"))
    emit(found, output, lambda items: table("Automations", ["name", "enabled", "trigger", "actions", "updated (UTC)"], [
        (a["name"], "yes" if a["enabled"] else "paused", _trigger_summary(a["trigger"]),
         ", ".join(x["type"] for x in a["actions"]), short_time(a["updated"])) for a in items]))


@automation_app.command("inspect")
def automation_inspect(name: str) -> None:
    """Show an automation (by name or id) as JSON."""
    with get_client() as client:
        emit(client.request("GET", client.ws(f"/automations/{name}")), Output.json, str)


def _set_enabled(name: str, enabled: bool) -> None:
    with get_client() as client:
        client.request("PATCH", client.ws(f"/automations/{name}"), json={"enabled": enabled})
    console.print(f"Automation {name!r} {'resumed' if enabled else 'paused'}", highlight=False)


@automation_app.command("pause")
def automation_pause(name: str) -> None:
    """Stop an automation from firing (it keeps its definition)."""
    _set_enabled(name, False)


@automation_app.command("resume")
def automation_resume(name: str) -> None:
    """Let a paused automation fire again."""
    _set_enabled(name, True)


@automation_app.command("delete")
def automation_delete(name: str, yes: bool = YesOption) -> None:
    """Delete an automation."""
    if not name:
        raise InvalidInput("name: give the automation's name or id")
    confirm(f"Delete automation {name!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/automations/{name}"))
    console.print(f"Deleted automation {name!r}", highlight=False)
