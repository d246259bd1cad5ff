"""``DockerImage``: the image a deployment runs.

Building and pushing images (Docker or daemonless, linux/amd64) is in progress:
``sdk.images.layers`` (deterministic layers, OCI config and manifest) and
``sdk.images.registry`` (the distribution API with its auth, pushing only missing
blobs) are the daemonless backend's parts, tested against a real registry. Until
the build itself lands, a ``DockerImage`` names an existing image, which is recorded
on the deployment and handed to the pusher; ``flow.deploy(image=DockerImage(...))``
with ``build=True`` says so clearly instead of pretending to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control_plane.errors import InvalidInput


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
        for attr, value in (("name", name), ("tag", tag), ("platform", platform), ("dockerfile", dockerfile),
                            ("base_image", base_image), ("backend", backend), ("build_kwargs", build_kwargs)):
            object.__setattr__(self, attr, value)

    @property
    def reference(self) -> str:
        last = self.name.rsplit("/", 1)[-1]
        if self.tag:
            return f"{self.name}:{self.tag}"
        return self.name if (":" in last or "@" in self.name) else f"{self.name}:latest"


def image_reference(image: str | DockerImage | None, build: bool) -> str | None:
    if image is None or isinstance(image, str):
        return image
    if build:
        raise InvalidInput(
            f"image: building images is not available in this release; build and push {image.reference!r} "
            "yourself and deploy with build=False (or pass the image reference as a string)"
        )
    return image.reference
