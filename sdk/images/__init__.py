"""``DockerImage``: the image a deployment runs, built for linux/amd64 and pushed where the pool expects.

``DockerImage(name, tag=None, platform="linux/amd64", dockerfile="auto", base_image=None,
backend="auto", **build_kwargs)``. ``backend="auto"`` uses a Docker engine when one answers
(``sdk.images.docker_backend``), else builds without one (``sdk.images.build``); a user's own
Dockerfile needs the engine. A name without a registry goes under the profile's build namespace
(``PUSHPOOL_BUILD_NAMESPACE``, which provisioners set). The default tag is a hash of the build's
inputs, so an unchanged project is neither rebuilt nor pushed again; deployments record the image
by digest (``repo@sha256:…``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushpool.control_plane.errors import InvalidInput
from pushpool.images.python_layers import ImageBuildError
from pushpool.images.report import BuildReport

BACKENDS = ("auto", "docker", "daemonless")


@dataclass(frozen=True)
class DockerImage:
    name: str
    tag: str | None = None
    platform: str = "linux/amd64"
    dockerfile: str = "auto"
    base_image: str | None = None
    backend: str = "auto"
    build_kwargs: dict[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, tag: str | None = None, platform: str = "linux/amd64", dockerfile: str = "auto",
                 base_image: str | None = None, backend: str = "auto", **build_kwargs: Any) -> None:
        if not name:
            raise InvalidInput("image.name: an image name is required")
        if backend not in BACKENDS:
            raise InvalidInput(f"image.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
        if "@" in name:
            raise InvalidInput("image.name: a digest names an image that exists; pass it as a string, not DockerImage")
        last = name.rsplit("/", 1)[-1]
        if ":" in last and tag is None:
            name, tag = name.rsplit(":", 1)
        for attr, value in (("name", name), ("tag", tag), ("platform", platform), ("dockerfile", dockerfile),
                            ("base_image", base_image), ("backend", backend), ("build_kwargs", build_kwargs)):
            object.__setattr__(self, attr, value)

    def __hash__(self) -> int:
        return hash((self.name, self.tag, self.platform, self.dockerfile, self.base_image, self.backend,
                     repr(sorted(self.build_kwargs.items()))))

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag or 'latest'}"

    def build(self, project_root: Path | str = ".", *, push: bool = True, namespace: str | None = None,
              quiet: bool = False) -> BuildReport:
        """Build (and push) this image from the project at ``project_root``; prints progress on stderr."""
        from pushpool.images.build import build_daemonless
        from pushpool.images.credentials import credentials_for, ensure_repository
        from pushpool.images.progress import BuildProgress
        from pushpool.images.registry import Registry, target_repository

        root = Path(project_root).resolve()
        if namespace is None:
            from pushpool.settings import ClientSettings

            namespace = ClientSettings().build_namespace
        host, repository = target_repository(self.name, namespace)
        backend, engine_client = self._backend(push)

        def registry_for(registry_host: str) -> Registry:
            return Registry(registry_host, credentials_for(registry_host))

        with BuildProgress(quiet) as progress:
            progress.step(f"building {host}/{repository} ({self.platform}, {backend} backend) from {root}")
            if push and ensure_repository(host, repository):
                progress.step(f"created repository {repository} in {host}")
            if backend == "docker":
                from pushpool.images.docker_backend import build_with_docker

                report = build_with_docker(host, repository, self.tag, root, base_image=self.base_image,
                                           platform=self.platform, dockerfile=self.dockerfile, push=push,
                                           registry_for=registry_for, credentials=credentials_for,
                                           progress=progress, build_kwargs=self.build_kwargs, client=engine_client)
            else:
                report = build_daemonless(host, repository, self.tag, root, base_image=self.base_image,
                                          platform=self.platform, registry_for=registry_for, progress=progress)
        progress.summary(report.summary())
        return report

    def _backend(self, push: bool) -> tuple[str, Any]:
        """The backend to build with, and the engine client when ``auto`` found one (so it is asked once);
        what the daemonless backend cannot do is refused here, before a build starts."""
        from pushpool.images.build import check_daemonless
        from pushpool.images.docker_backend import engine

        if self.backend == "docker":
            return "docker", None
        if self.backend == "daemonless":
            if self.dockerfile != "auto":
                raise ImageBuildError(f"image.dockerfile: {self.dockerfile!r} needs the Docker backend; "
                                      "drop backend='daemonless' or use dockerfile='auto'")
            if self.build_kwargs:
                raise ImageBuildError(f"image: {', '.join(self.build_kwargs)} are Docker build options; "
                                      "the daemonless backend takes none")
        else:
            client = engine()
            if client is not None:
                return "docker", client
            if self.dockerfile != "auto":
                raise ImageBuildError(f"image.dockerfile: {self.dockerfile!r} needs a Docker engine and none "
                                      "answers; start Docker, or use dockerfile='auto' to build without one")
        check_daemonless(self.platform, push)
        return "daemonless", None


def resolve_images(items: list[tuple[str | DockerImage | None, Path]], build: bool, push: bool,
                   quiet: bool = False) -> list[str | None]:
    """The image reference each deployment records; each distinct (image, project) is built once."""
    built: dict[tuple[DockerImage, Path], str] = {}
    out: list[str | None] = []
    for image, root in items:
        if image is None or isinstance(image, str):
            out.append(image)
            continue
        if not build:
            out.append(image.reference)
            continue
        key = (image, root.resolve())
        if key not in built:
            report = image.build(root, push=push, quiet=quiet)
            built[key] = report.reference if push else report.tagged
        out.append(built[key])
    return out


__all__ = ["BuildReport", "DockerImage", "ImageBuildError", "resolve_images"]
