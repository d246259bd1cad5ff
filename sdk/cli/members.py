"""``whoami``, ``user`` and ``member``: the people of an instance and who may do what in a workspace.

Instance administrators create users (``user create`` prints the user's first key once, to hand
over); a workspace's owners add them (``member add``), change their role and remove them.
"""

from __future__ import annotations

import typer

from pushpool.cli.admin import show_issued_key
from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, table
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import Role

ROLES = tuple(role.value for role in Role)
ROLE_HELP = "owner (everything, members too), developer (pools, deployments, blocks), runner (start and " \
            "cancel runs), viewer (read)."

user_app = typer.Typer(help="Users of the instance (instance administrators).", no_args_is_help=True)
member_app = typer.Typer(help="Members of the current workspace and their roles.", no_args_is_help=True)


def _role(value: str) -> str:
    role = value.lower()
    if role not in ROLES:
        raise InvalidInput(f"--role: {value!r} is not a role ({', '.join(ROLES)})")
    return role


def whoami(output: Output = OutputOption) -> None:
    """Who the current key belongs to, and your role in each of your workspaces."""
    with get_client() as client:
        me = client.me()
        current = client.workspace
    if me["kind"] == "run_token":
        emit(me, output, lambda m: f"A flow run's token (run {m['flow_run_id']})")
        return
    actor = me["actor"]

    def render(m: dict) -> object:
        admin = ", instance administrator" if actor["is_admin"] else ""
        console.print(f"{actor['name']} ({actor['kind'].replace('_', ' ')}{admin}), id {actor['id']}; "
                      f"key {m['api_key']['prefix']}…", highlight=False)
        return table("Workspaces", ["name", "role", "current"], [
            (w["workspace_name"], w["role"], "*" if current in (w["workspace_name"], w["workspace_id"]) else "")
            for w in m["memberships"]])

    emit(me, output, render)


@user_app.command("create")
def user_create(
    name: str = typer.Argument(..., help="The user's name (unique on this instance), e.g. an email address."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Also add them to this workspace ..."),
    role: str = typer.Option("developer", "--role", help="... with this role: " + ROLE_HELP),
    admin: bool = typer.Option(False, "--admin", help="Make them an instance administrator too."),
    output: Output = OutputOption,
) -> None:
    """Create a user; their first API key is shown once: hand it over (they run 'pushpool login --key ...')."""
    with get_client() as client:
        issued = client.request("POST", "/api/users", json={
            "name": name, "workspace": workspace, "role": _role(role), "is_admin": admin})
    where = f", {role} of workspace {workspace!r}" if workspace else " (in no workspace yet: 'pushpool member add')"
    show_issued_key(issued, output, f"User {name!r}{where}; their API key, shown once:")


@user_app.command("ls")
def user_ls(output: Output = OutputOption) -> None:
    """Every user of the instance."""
    with get_client() as client:
        users = client.request("GET", "/api/users")
    emit(users, output, lambda us: table("Users", ["name", "admin", "id"], [
        (u["name"], "yes" if u["is_admin"] else "", u["id"]) for u in us]))


def _find_member(client, reference: str) -> dict:
    members = client.request("GET", client.ws("/members"))
    matches = [m for m in members if reference in (m["actor"]["id"], m["actor"]["name"])]
    if not matches:
        raise InvalidInput(f"member: no member {reference!r} in workspace {client.workspace!r} "
                           "(see 'pushpool member ls')")
    if len(matches) > 1:
        raise InvalidInput(f"member: {len(matches)} members are named {reference!r}; give the id")
    return matches[0]


@member_app.command("ls")
def member_ls(output: Output = OutputOption) -> None:
    """Users and service accounts of the current workspace, with their roles."""
    with get_client() as client:
        members = client.request("GET", client.ws("/members"))
        title = f"Members of {client.workspace!r}"
    emit(members, output, lambda ms: table(title, ["name", "kind", "role", "id"], [
        (m["actor"]["name"], m["actor"]["kind"].replace("_", " "), m["role"], m["actor"]["id"]) for m in ms]))


@member_app.command("add")
def member_add(user: str = typer.Argument(..., help="The user's name or id."),
               role: str = typer.Option("developer", "--role", help=ROLE_HELP),
               output: Output = OutputOption) -> None:
    """Add an existing user to the current workspace (workspace owners)."""
    with get_client() as client:
        added = client.request("POST", client.ws("/members"), json={"user": user, "role": _role(role)})
        workspace = client.workspace
    if output is Output.json:
        emit(added, output, str)
        return
    console.print(f"Added {added['actor']['name']!r} to workspace {workspace!r} as {added['role']}")


@member_app.command("set-role")
def member_set_role(member: str = typer.Argument(..., help="Member name or id."),
                    role: str = typer.Argument(..., help=ROLE_HELP)) -> None:
    """Change a member's role (workspace owners; the last owner stays one)."""
    with get_client() as client:
        found = _find_member(client, member)
        client.request("PUT", client.ws(f"/members/{found['actor']['id']}"), json={"role": _role(role)})
    console.print(f"{found['actor']['name']!r} is now {role.lower()} (was {found['role']})")


@member_app.command("remove")
def member_remove(member: str = typer.Argument(..., help="Member name or id."), yes: bool = YesOption) -> None:
    """Remove a user from the current workspace; their keys stop working here at once."""
    with get_client() as client:
        found = _find_member(client, member)
        confirm(f"Remove {found['actor']['name']!r} ({found['role']}) from workspace {client.workspace!r}?", yes)
        client.request("DELETE", client.ws(f"/members/{found['actor']['id']}"))
        workspace = client.workspace
    console.print(f"Removed {found['actor']['name']!r} from workspace {workspace!r}")
