"""``image build``: build (and push) a project's linux/amd64 image without deploying it."""

from __future__ import annotations

from pathlib import Path

import typer

from pushpool.cli.common import Output, OutputOption, emit
from pushpool.images import BACKENDS, DockerImage

image_app = typer.Typer(help="Images for the clouds: linux/amd64, built with Docker or without.", no_args_is_help=True)


@image_app.command("build")
def image_build(
    name: str = typer.Argument(..., help="registry/repository, or a name under the profile's build namespace."),
    path: Path = typer.Option(Path("."), "--path", "-p", help="The project root (its requirements and code)."),
    tag: str = typer.Option(None, "--tag", "-t", help="Default: a hash of the build's inputs."),
    backend: str = typer.Option("auto", "--backend", help=f"{', '.join(BACKENDS)}."),
    dockerfile: str = typer.Option("auto", "--dockerfile", help="Your own Dockerfile (Docker backend)."),
    base_image: str = typer.Option(None, "--base-image", help="Default: python:X.Y-slim for this Python."),
    platform: str = typer.Option("linux/amd64", "--platform"),
    push: bool = typer.Option(True, "--push/--no-push", help="--no-push builds a local image (Docker backend)."),
    output: Output = OutputOption,
) -> None:
    """Build the image and push it; prints the reference to deploy with (repo@sha256:…)."""
    image = DockerImage(name, tag=tag, platform=platform, dockerfile=dockerfile, base_image=base_image,
                        backend=backend)
    report = image.build(path, push=push, quiet=output is Output.json)
    if output is Output.json:
        emit(report.as_dict(), output, str)
        return
    typer.echo(report.reference if push else report.tagged)
