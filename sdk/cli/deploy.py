"""``pushpool deploy`` (from pushpool.yaml) and ``pushpool init``."""

from __future__ import annotations

from pathlib import Path

import typer

from pushpool.cli.common import Output, OutputOption, console, emit, get_client, table
from pushpool.control_plane.errors import InvalidInput
from pushpool.deployments import deploy as deploy_all
from pushpool.project_file import DEFAULT_FILE, STARTER, load_project_file, to_runner_deployment


def deploy(
    all_: bool = typer.Option(False, "--all", help="Deploy every deployment in the file."),
    name: list[str] = typer.Option(None, "--name", "-n", help="Deployment name (or flow/name); repeatable."),
    file: Path = typer.Option(Path(DEFAULT_FILE), "--file", "-f", help="The project file."),
    no_build: bool = typer.Option(False, "--no-build", help="Record images by name; build nothing."),
    no_push: bool = typer.Option(False, "--no-push", help="Build images locally (Docker backend) without pushing."),
    output: Output = OutputOption,
) -> None:
    """Create or update the deployments declared in pushpool.yaml (running it twice changes nothing).

    An `image:` given as a mapping is built for linux/amd64 and pushed once for all deployments that
    share it; the deployments record it by digest."""
    project = load_project_file(file)
    root = file.resolve().parent
    specs = project.deployments
    if name:
        wanted = {n.split("/")[-1] for n in name}
        known = {s.name for s in specs}
        missing = sorted(wanted - known)
        if missing:
            raise InvalidInput(f"--name: {missing[0]!r} is not in {file} (deployments: {', '.join(sorted(known))})")
        specs = [s for s in specs if s.name in wanted]
    elif not all_ and len(specs) != 1:
        raise InvalidInput(f"{file} declares {len(specs)} deployments; choose with --name or use --all")
    runner_deployments = [to_runner_deployment(s, root) for s in specs]
    with get_client() as client:
        applied = deploy_all(*runner_deployments, build=not no_build, push=not no_push, client=client,
                             quiet=output is Output.json)
    if output is Output.table:
        for d in runner_deployments:
            console.print(f"Deployed {d.full_name} to work pool {d.work_pool_name!r}")
    if output is Output.json:
        emit(applied, output, str)
    else:
        console.print(table(None, ["deployment", "schedules", "id"], [
            (f"{a['flow_name']}/{a['name']}", len(a["schedules"]), a["id"]) for a in applied]))
        console.print("Run one with: pushpool deployment run FLOW/DEPLOYMENT --watch", highlight=False)


def init(file: Path = typer.Option(Path(DEFAULT_FILE), "--file", "-f"),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")) -> None:
    """Write a commented starter pushpool.yaml."""
    if file.exists() and not force:
        raise InvalidInput(f"{file} already exists; pass --force to overwrite it")
    file.write_text(STARTER)
    console.print(f"Wrote {file}; edit it, then run 'pushpool deploy --all'")
