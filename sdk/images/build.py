"""The daemonless backend: a linux/amd64 image made of registry API calls and tar files, no Docker.

1. The base image's linux/amd64 manifest and config are read from its registry (an index is
   resolved to its amd64 entry). Its ``PYTHON_VERSION`` (official Python images set it) picks the
   CPython the wheels are for; else this machine's minor version.
2. The content tag is a hash of every input: the base image's digest, platform, Python version, the
   project's requirements, the pushpool runtime and the code layer. When the registry already has
   that tag, nothing is built or pushed.
3. Layers, on top of the base's: the pushpool runtime (its packages, their amd64 wheels and the
   ``pushpool-runner`` launcher), the project's dependencies (amd64 wheels), the project's code.
   The first two are cached on disk by their inputs, so a code change rebuilds only the code layer.
4. Push what the registry lacks (HEAD first; base layers are mounted when base and target share a
   registry, else copied), then the config and the manifest under the tag.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushpool.images.layers import Blob, Layer, canonical, config_env, image_config, image_manifest, sha256
from pushpool.images.progress import BuildProgress
from pushpool.images.project import (
    APP_DIR,
    BIN_DIR,
    LAUNCHER_PATH,
    RUNTIME_DIR,
    Runtime,
    project_requirements,
    pushpool_runtime,
)
from pushpool.images.python_layers import LOCAL_PYTHON, SITE_PACKAGES, ImageBuildError, code_layer, dependency_layer
from pushpool.images.registry import Registry, split_reference
from pushpool.images.report import BuildReport, LayerOutcome

SUPPORTED_PLATFORMS = ("linux/amd64",)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUNNER_CMD = ["pushpool-runner"]
RegistryFactory = Callable[[str], Registry]


def default_base_image(python_version: str = LOCAL_PYTHON) -> str:
    return f"python:{python_version}-slim"


def cache_dir() -> Path:
    """Where built layers are kept: ``PUSHPOOL_LAYER_CACHE``, else ``$PUSHPOOL_HOME/cache/layers``."""
    if os.environ.get("PUSHPOOL_LAYER_CACHE"):
        return Path(os.environ["PUSHPOOL_LAYER_CACHE"])
    home = Path(os.environ.get("PUSHPOOL_HOME") or Path.home() / ".pushpool")
    return home / "cache" / "layers"


def cached_layer(key: dict[str, Any], make: Callable[[], Layer]) -> Layer:
    """The layer made by ``make`` for inputs ``key``, kept on disk so unchanged inputs are not rebuilt."""
    name = sha256(canonical(key))[7:]
    directory = cache_dir()
    data_path, meta_path = directory / f"{name}.tar.gz", directory / f"{name}.json"
    if data_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        layer = Layer(data_path.read_bytes(), meta["media_type"], diff_id=meta["diff_id"])
        if layer.digest == meta["digest"]:
            return layer
    layer = make()
    directory.mkdir(parents=True, exist_ok=True)
    for path, content in ((data_path, layer.data),
                          (meta_path, canonical({"media_type": layer.media_type, "diff_id": layer.diff_id,
                                                 "digest": layer.digest}))):
        partial = path.with_suffix(".partial")
        partial.write_bytes(content)
        partial.replace(path)
    return layer


def runtime_layer(runtime: Runtime, python_version: str, platform: str = "linux/amd64") -> Layer:
    """pushpool's runner, its dependencies' amd64 wheels and the ``pushpool-runner`` launcher (cached)."""
    return cached_layer(
        {"kind": "runtime", "runtime": runtime.fingerprint, "python": python_version, "platform": platform},
        lambda: dependency_layer(runtime.requirements, python_version, destination=RUNTIME_DIR,
                                 extra_files=runtime.files, extra_executables=frozenset({LAUNCHER_PATH})))


def check_daemonless(platform: str, push: bool) -> None:
    """What the daemonless backend cannot do, said before a build starts."""
    if platform not in SUPPORTED_PLATFORMS:
        raise ImageBuildError(f"image.platform: the daemonless backend builds {', '.join(SUPPORTED_PLATFORMS)} "
                              f"only, not {platform!r}; use backend='docker' for other platforms")
    if not push:
        raise ImageBuildError("push=False: the daemonless backend builds straight into the registry; "
                              "use backend='docker' to build a local image without pushing")


def build_daemonless(host: str, repository: str, tag: str | None, project_root: Path, *,
                     base_image: str | None, platform: str, registry_for: RegistryFactory,
                     progress: BuildProgress) -> BuildReport:
    target = registry_for(host)
    base = read_base(base_image or default_base_image(), host, target, platform, registry_for, progress)
    base_env, python_version = config_env(base.config), base.python_version

    requirements, source = project_requirements(project_root)
    runtime = pushpool_runtime()
    code = code_layer(project_root, APP_DIR)
    fingerprint = sha256(canonical({"base": base.digest, "platform": platform, "python": python_version,
                                    "requirements": requirements, "runtime": runtime.fingerprint,
                                    "code": code.digest}))
    content_tag = tag is None
    tag = tag or fingerprint[7:23]
    repository_name = f"{host}/{repository}"
    if content_tag:
        existing = target.manifest_digest(repository, tag)
        if existing:
            return BuildReport(repository_name, tag, existing, "daemonless", up_to_date=True)

    progress.step(f"runtime layer (pushpool + {len(runtime.requirements)} dependencies, CPython {python_version})")
    ours: list[tuple[str, Layer]] = [("runtime", runtime_layer(runtime, python_version, platform))]
    if requirements:
        progress.step(f"dependency layer ({len(requirements)} from {source}, linux/amd64 wheels)")
        ours.append(("dependencies", cached_layer(
            {"kind": "dependencies", "requirements": requirements, "python": python_version, "platform": platform},
            lambda: dependency_layer(requirements, python_version))))
    ours.append(("code", code))

    env = {"PATH": f"/{BIN_DIR}:{base_env.get('PATH', DEFAULT_PATH)}", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": f"/{APP_DIR}:/{SITE_PACKAGES}:/{RUNTIME_DIR}"}
    config = image_config(base.config, [layer for _, layer in ours], env=env, cmd=RUNNER_CMD,
                          working_dir=f"/{APP_DIR}", platform=platform)
    return push_image(target, repository, tag, base, ours, config, progress)


@dataclass(frozen=True)
class BaseImage:
    """A base image's linux/amd64 manifest and config, and the registry they were read from."""

    registry: Registry
    repository: str
    manifest: dict[str, Any]
    digest: str
    config: dict[str, Any]

    @property
    def python_version(self) -> str:
        """X.Y of the CPython the wheels are for: the base's ``PYTHON_VERSION``, else this machine's."""
        return _python_of(config_env(self.config)) or LOCAL_PYTHON


def read_base(reference: str, host: str, target: Registry, platform: str, registry_for: RegistryFactory,
              progress: BuildProgress) -> BaseImage:
    """The base image ``reference`` (an index resolved to its ``platform`` entry)."""
    base_host, base_repository, base_tag = split_reference(reference)
    base_registry = target if base_host == host else registry_for(base_host)
    progress.step(f"base image {reference}: reading its {platform} manifest")
    manifest, digest = base_registry.platform_manifest(base_repository, base_tag, platform)
    config = json.loads(base_registry.get_blob(base_repository, manifest["config"]["digest"]))
    return BaseImage(base_registry, base_repository, manifest, digest, config)


def push_image(target: Registry, repository: str, tag: str, base: BaseImage, ours: list[tuple[str, Layer]],
               config: Blob, progress: BuildProgress) -> BuildReport:
    """Push what ``target`` lacks of the base's layers and ``ours``, then the config and the manifest as ``tag``."""
    manifest = image_manifest(config, [*base.manifest["layers"], *(layer.descriptor() for _, layer in ours)])
    outcomes = []
    for index, descriptor in enumerate(base.manifest["layers"]):
        outcomes.append(_push_base_layer(target, repository, base.registry, base.repository, descriptor,
                                         f"base layer {index + 1}", progress))
    for name, layer in ours:
        outcome = target.push_blob(repository, layer, progress=progress.upload(f"{name} layer", layer.size))
        outcomes.append(LayerOutcome(name, layer.digest, layer.size, outcome))
    target.push_blob(repository, config)
    digest = target.push_manifest(repository, tag, manifest)
    return BuildReport(f"{target.host}/{repository}", tag, digest, "daemonless", layers=outcomes)


def _python_of(env: dict[str, str]) -> str | None:
    """X.Y of the base image's ``PYTHON_VERSION`` (set by the official Python images)."""
    parts = env.get("PYTHON_VERSION", "").split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return None


def _push_base_layer(target: Registry, repository: str, source: Registry, source_repository: str,
                     descriptor: dict[str, Any], name: str, progress: BuildProgress) -> LayerOutcome:
    digest, size = descriptor["digest"], int(descriptor.get("size", 0))
    if target.has_blob(repository, digest, push=True):
        return LayerOutcome(name, digest, size, "exists")
    if source is target and target.mount_blob(repository, digest, source_repository):
        return LayerOutcome(name, digest, size, "mounted")
    blob = Blob(source.get_blob(source_repository, digest), descriptor["mediaType"])
    return LayerOutcome(name, digest, size, target.push_blob(repository, blob, progress=progress.upload(name, size)))
