"""``login``, ``workspace``, ``config`` and ``profile``: where the CLI talks to and as whom."""

from __future__ import annotations

import typer

from pushpool import profiles
from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, table
from pushpool.client import PushpoolClient, normalize_api_url
from pushpool.control_plane.errors import InvalidInput
from pushpool.settings import SETTING_NAMES, selected_profile_name, setting_sources

workspace_app = typer.Typer(help="Create and list workspaces, and choose the one commands use.", no_args_is_help=True)
config_app = typer.Typer(help="View and change settings of the active profile.", no_args_is_help=True)
profile_app = typer.Typer(help="Manage profiles (sets of settings) in $PUSHPOOL_HOME/profiles.toml.",
                          no_args_is_help=True)


def _setting_name(key: str) -> str:
    name = key.upper()
    if not name.startswith("PUSHPOOL_"):
        name = f"PUSHPOOL_{name}"
    if name not in SETTING_NAMES:
        raise InvalidInput(f"setting {key!r} is unknown; settings: {', '.join(SETTING_NAMES)}")
    return name


def login(
    key: str = typer.Option(..., "--key", "-k", help="API key (ppu_… or ppb_…)."),
    url: str = typer.Option(None, "--url", help="API URL; defaults to the profile's."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Workspace; defaults to the key's first."),
) -> None:
    """Check a key against the API and save it (with the URL and workspace) in the active profile."""
    current = profiles.load()["profiles"].get(selected_profile_name(), {})
    api_url = normalize_api_url(url or current.get("PUSHPOOL_API_URL") or "")
    if not api_url:
        raise InvalidInput("--url: no API URL in the profile yet; pass --url http://HOST:PORT")
    with PushpoolClient(api_url, key) as client:
        me = client.me()
    names = [m["workspace_name"] for m in me.get("memberships", [])]
    chosen = workspace or (names[0] if names else None)
    if chosen is None:
        raise InvalidInput("--workspace: this key is not a member of any workspace")
    if workspace and workspace not in names:
        raise InvalidInput(f"--workspace: the key is not a member of {workspace!r} (it is of: {', '.join(names)})")
    name = selected_profile_name()
    profiles.update_profile(name, {"PUSHPOOL_API_URL": api_url, "PUSHPOOL_API_KEY": key,
                                   "PUSHPOOL_WORKSPACE": chosen})
    console.print(f"Logged in to {api_url} as {me['actor']['name']!r} (workspace {chosen!r}); "
                  f"saved to profile {name!r}")


@workspace_app.command("ls")
def workspace_ls(output: Output = OutputOption) -> None:
    """Workspaces the current key is a member of."""
    with get_client() as client:
        me = client.me()
        current = client.workspace
    rows = me.get("memberships", [])
    emit(rows, output, lambda rs: table("Workspaces", ["name", "role", "current", "id"], [
        (r["workspace_name"], r["role"], "*" if current in (r["workspace_name"], r["workspace_id"]) else "",
         r["workspace_id"]) for r in rs]))


@workspace_app.command("create")
def workspace_create(name: str = typer.Argument(..., help="Workspace name: letters, digits, '-', '_' and '.'."),
                     use: bool = typer.Option(False, "--use", help="Use it from now on (in the active profile)."),
                     output: Output = OutputOption) -> None:
    """Create a workspace (instance administrators); you become its owner."""
    with get_client() as client:
        workspace = client.request("POST", "/api/workspaces", json={"name": name})
    if use:
        profiles.update_profile(selected_profile_name(), {"PUSHPOOL_WORKSPACE": name})
    if output is Output.json:
        emit(workspace, output, str)
        return
    console.print(f"Created workspace {name!r}; you are its owner. "
                  + ("Using it from now on." if use else f"Use it with 'pushpool workspace set {name}'."))


@workspace_app.command("set")
def workspace_set(name: str = typer.Argument(..., help="Workspace name.")) -> None:
    """Use this workspace from now on (in the active profile)."""
    with get_client() as client:
        names = [m["workspace_name"] for m in client.me().get("memberships", [])]
    if name not in names:
        raise InvalidInput(f"workspace: {name!r} is not one of your workspaces ({', '.join(names)})")
    profiles.update_profile(selected_profile_name(), {"PUSHPOOL_WORKSPACE": name})
    console.print(f"Using workspace {name!r}")


@workspace_app.command("settings")
def workspace_settings(
    require_webhook_service_account: bool = typer.Option(
        None, "--require-webhook-service-account/--allow-open-webhooks",
        help="Every webhook must name a service account whose key its callers send (admins)."),
    output: Output = OutputOption,
) -> None:
    """Show the current workspace's settings, or change them."""
    with get_client() as client:
        if require_webhook_service_account is None:
            workspace = next(w for w in client.request("GET", "/api/workspaces")
                             if client.workspace in (w["name"], w["id"]))
        else:
            workspace = client.request("PATCH", f"/api/workspaces/{client.workspace}", json={
                "require_webhook_service_account": require_webhook_service_account})
    emit(workspace, output, lambda w: table(f"Workspace {w['name']}", ["setting", "value"], [
        ("require_webhook_service_account", str(w["require_webhook_service_account"]).lower())]))


@config_app.command("set")
def config_set(pairs: list[str] = typer.Argument(..., help="KEY=VALUE, e.g. PUSHPOOL_API_URL=http://…")) -> None:
    """Set settings in the active profile."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput(f"config set: expected KEY=VALUE, got {pair!r}")
        values[_setting_name(key)] = value
    profiles.update_profile(selected_profile_name(), values, activate=False)
    for key in values:
        console.print(f"Set {key} in profile {selected_profile_name()!r}")


@config_app.command("unset")
def config_unset(keys: list[str] = typer.Argument(..., help="Setting names.")) -> None:
    """Remove settings from the active profile."""
    data = profiles.load()
    profile = data["profiles"].get(selected_profile_name(), {})
    for key in keys:
        profile.pop(_setting_name(key), None)
        console.print(f"Unset {_setting_name(key)}")
    data["profiles"][selected_profile_name()] = profile
    profiles.save(data)


@config_app.command("view")
def config_view(
    show_defaults: bool = typer.Option(False, "--show-defaults", help="Also show settings left at their default."),
    show_secrets: bool = typer.Option(False, "--show-secrets", help="Show the API key instead of masking it."),
    output: Output = OutputOption,
) -> None:
    """The effective settings and where each comes from (env, .env, profile, default)."""
    rows = []
    for name, (value, source) in setting_sources().items():
        if source == "default" and not show_defaults:
            continue
        if name == "PUSHPOOL_API_KEY" and value and not show_secrets:
            value = value[:8] + "********"
        rows.append({"setting": name, "value": value, "source": source})
    emit(rows, output, lambda rs: table(f"Profile {selected_profile_name()!r}", ["setting", "value", "source"],
                                         [(r["setting"], r["value"], r["source"]) for r in rs]))


@profile_app.command("create")
def profile_create(name: str, from_profile: str = typer.Option(None, "--from", help="Copy this profile.")) -> None:
    """Create an empty profile (or a copy)."""
    data = profiles.load()
    if name in data["profiles"]:
        raise InvalidInput(f"profile: {name!r} already exists")
    if from_profile and from_profile not in data["profiles"]:
        raise InvalidInput(f"--from: no profile {from_profile!r}")
    data["profiles"][name] = dict(data["profiles"].get(from_profile, {})) if from_profile else {}
    profiles.save(data)
    console.print(f"Created profile {name!r}; switch with 'pushpool profile use {name}'")


@profile_app.command("use")
def profile_use(name: str) -> None:
    """Make a profile the active one."""
    data = profiles.load()
    if name not in data["profiles"]:
        raise InvalidInput(f"profile: no profile {name!r} (profiles: {', '.join(data['profiles']) or 'none'})")
    data["active"] = name
    profiles.save(data)
    console.print(f"Now using profile {name!r}")


@profile_app.command("ls")
def profile_ls(output: Output = OutputOption) -> None:
    """All profiles; the active one is marked."""
    data = profiles.load()
    active = selected_profile_name()
    rows = [{"name": n, "active": n == active, "api_url": p.get("PUSHPOOL_API_URL")}
            for n, p in data["profiles"].items()]
    emit(rows, output, lambda rs: table("Profiles", ["name", "active", "api url"],
                                         [(r["name"], "*" if r["active"] else "", r["api_url"]) for r in rs]))


@profile_app.command("delete")
def profile_delete(name: str, yes: bool = YesOption) -> None:
    """Delete a profile (not the active one)."""
    data = profiles.load()
    if name not in data["profiles"]:
        raise InvalidInput(f"profile: no profile {name!r}")
    if name == data["active"]:
        raise InvalidInput(f"profile: {name!r} is active; 'pushpool profile use' another one first")
    confirm(f"Delete profile {name!r}?", yes)
    del data["profiles"][name]
    profiles.save(data)
    console.print(f"Deleted profile {name!r}")
