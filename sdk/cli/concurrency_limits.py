"""``concurrency-limit``: at most N task runs with a tag at once, across every run of the workspace."""

from __future__ import annotations

import time

import typer

from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, get_client, table

concurrency_limit_app = typer.Typer(help="Tag concurrency limits: at most N task runs with a tag at once, across "
                                         "every run (tasks with @task(tags=[...])).", no_args_is_help=True)


def _active(limit: dict) -> int:
    now = time.time()
    return sum(1 for until in limit["holders"].values() if until > now)


@concurrency_limit_app.command("create")
def create(tag: str, limit: int = typer.Argument(..., min=0, help="Task runs with this tag at once (0 stops them).")
           ) -> None:
    """Create a tag's limit, or change it."""
    with get_client() as client:
        client.request("PUT", client.ws(f"/concurrency_limits/{tag}"), json={"limit": limit})
    console.print(f"At most {limit} task run(s) tagged {tag!r} at once", highlight=False)


@concurrency_limit_app.command("ls")
def ls(output: Output = OutputOption) -> None:
    """Every tag limit, with the slots held now."""
    with get_client() as client:
        limits = client.request("GET", client.ws("/concurrency_limits"))
    emit(limits, output, lambda ls_: table("Concurrency limits", ["tag", "limit", "active"], [
        (c["tag"], c["limit"], _active(c)) for c in ls_]))


@concurrency_limit_app.command("inspect")
def inspect(tag: str, output: Output = OutputOption) -> None:
    """A tag's limit and the task runs holding its slots now."""
    with get_client() as client:
        limit = client.request("GET", client.ws(f"/concurrency_limits/{tag}"))
    now = time.time()
    emit(limit, output, lambda c: table(f"Tag {c['tag']!r}: {_active(c)} of {c['limit']} slots held",
                                        ["holder (run/task run)", "lease ends in"],
                                        [(h, f"{until - now:.0f}s") for h, until in c["holders"].items()
                                         if until > now]))


@concurrency_limit_app.command("delete")
def delete(tag: str, yes: bool = YesOption) -> None:
    """Remove a tag's limit (its task runs are no longer held back)."""
    confirm(f"Delete the concurrency limit of tag {tag!r}?", yes)
    with get_client() as client:
        client.request("DELETE", client.ws(f"/concurrency_limits/{tag}"))
    console.print(f"Deleted the concurrency limit of tag {tag!r}", highlight=False)
