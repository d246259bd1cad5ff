"""The Docker backend: the image is built by a Docker engine, for linux/amd64, and pushed from it.

The build context is made here as a tar (nothing is written into the project): the project's files
(as the code layer picks them), the pushpool runtime (the same files and amd64 wheels the
daemonless backend puts in its runtime layer, so no network is needed for pushpool itself), the
project's requirements and, unless the user gave their own, a generated Dockerfile::

    FROM python:X.Y-slim                       (or base_image)
    COPY .pushpool/opt/pushpool /opt/pushpool  (the runner and its dependencies)
    COPY .pushpool/requirements.txt …          (when the project has requirements)
    RUN python -m pip install --no-cache-dir -r …   (compiled here when a dependency has no wheel)
    COPY app /app
    WORKDIR /app · ENV PATH, PYTHONPATH · CMD ["pushpool-runner"]

With ``docker buildx`` the context goes to ``docker buildx build --platform … --push -`` on stdin;
without it, to the engine's API (the ``docker`` Python SDK) with the ``platform`` argument, and the
image is pushed through the API with the registry credentials found for its host.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from pushpool.images.build import default_base_image, runtime_layer
from pushpool.images.layers import canonical, sha256, tar_layer
from pushpool.images.progress import BuildProgress
from pushpool.images.project import APP_DIR, BIN_DIR, LAUNCHER_PATH, RUNTIME_DIR, project_requirements, pushpool_runtime
from pushpool.images.python_layers import LOCAL_PYTHON, ImageBuildError, collect_files
from pushpool.images.report import BuildReport, LayerOutcome

CONTEXT_DIR = ".pushpool"


def engine(timeout: float = 5.0) -> Any | None:
    """A client of the Docker engine named by DOCKER_HOST (or the default socket), or None when none answers."""
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no engine: docker raises DockerException, requests' errors, OSError
        return None


def has_buildx() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=30).returncode == 0


def generated_dockerfile(base_image: str, has_requirements: bool) -> str:
    lines = [f"FROM {base_image}", f"COPY {CONTEXT_DIR}/opt/pushpool /opt/pushpool"]
    if has_requirements:
        lines += [f"COPY {CONTEXT_DIR}/requirements.txt /opt/pushpool/requirements.txt",
                  "RUN python -m pip install --no-cache-dir --disable-pip-version-check "
                  "-r /opt/pushpool/requirements.txt"]
    lines += [f"COPY {APP_DIR} /{APP_DIR}", f"WORKDIR /{APP_DIR}",
              f"ENV PATH=/{BIN_DIR}:$PATH PYTHONPATH=/{APP_DIR}:/{RUNTIME_DIR} PYTHONUNBUFFERED=1",
              'CMD ["pushpool-runner"]']
    return "\n".join(lines) + "\n"


def build_context(project_root: Path, base_image: str, dockerfile: str, python_version: str) -> tuple[bytes, str]:
    """(the context as a tar, the Dockerfile's name in it)."""
    if dockerfile != "auto":
        user_dockerfile = (project_root / dockerfile)
        if not user_dockerfile.is_file():
            raise ImageBuildError(f"image.dockerfile: {user_dockerfile} does not exist")
        files, executables = collect_files(project_root, ".")
        files = {name.removeprefix("./"): content for name, content in files.items()}
        return _tar(files, frozenset(e.removeprefix("./") for e in executables)), dockerfile
    requirements, _ = project_requirements(project_root)
    runtime = runtime_layer(pushpool_runtime(), python_version)
    files, executables = collect_files(project_root, APP_DIR)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(runtime.data))) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[f"{CONTEXT_DIR}/{member.name}"] = tar.extractfile(member).read()  # type: ignore[union-attr]
    executables |= {f"{CONTEXT_DIR}/{LAUNCHER_PATH}"}
    if requirements:
        files[f"{CONTEXT_DIR}/requirements.txt"] = ("\n".join(requirements) + "\n").encode()
    files["Dockerfile.pushpool"] = generated_dockerfile(base_image, bool(requirements)).encode()
    return _tar(files, frozenset(executables)), "Dockerfile.pushpool"


def _tar(files: dict[str, bytes], executables: frozenset[str]) -> bytes:
    return gzip.decompress(tar_layer(files, executables).data)


def build_with_docker(host: str, repository: str, tag: str | None, project_root: Path, *, base_image: str | None,
                      platform: str, dockerfile: str, push: bool, registry_for: Any, credentials: Any,
                      progress: BuildProgress, build_kwargs: dict[str, Any], client: Any = None) -> BuildReport:
    base = base_image or default_base_image()
    progress.step("preparing the build context" + (" (pushpool runtime: linux/amd64 wheels)"
                                                   if dockerfile == "auto" else ""))
    context, dockerfile_name = build_context(project_root, base, dockerfile, LOCAL_PYTHON)
    content_tag = tag is None
    tag = tag or sha256(canonical({"context": sha256(context), "base": base, "platform": platform,
                                   "args": build_kwargs}))[7:23]
    name = f"{host}/{repository}"
    if content_tag and push:
        existing = registry_for(host).manifest_digest(repository, tag)
        if existing:
            return BuildReport(name, tag, existing, "docker", up_to_date=True)
    if push and has_buildx():
        return _buildx(name, tag, context, dockerfile_name, platform, build_kwargs, progress)
    client = client or engine()
    if client is None:
        raise ImageBuildError("backend='docker': no Docker engine answers (is Docker running? DOCKER_HOST?); "
                              "or build with backend='daemonless'")
    progress.step(f"building {name}:{tag} for {platform} with the Docker engine")
    events = client.api.build(fileobj=io.BytesIO(context), custom_context=True, dockerfile=dockerfile_name,
                              tag=f"{name}:{tag}", platform=platform, rm=True, forcerm=True, decode=True,
                              **build_kwargs)
    _follow_build(events)
    if not push:
        image_id = client.images.get(f"{name}:{tag}").id
        return BuildReport(name, tag, image_id, "docker")
    found = credentials(host)
    auth = {"username": found[0], "password": found[1]} if found else None
    outcomes, digest = _push(client, name, tag, auth, progress)
    return BuildReport(name, tag, digest, "docker", layers=outcomes)


def _follow_build(events: Any) -> None:
    tail: list[str] = []
    for event in events:
        if "error" in event:
            detail = "\n".join(tail[-5:])
            raise ImageBuildError(f"docker build failed: {event['error'].strip()}" + (f"\n{detail}" if detail else ""))
        text = (event.get("stream") or "").strip()
        if text:
            tail.append(text)


def _push(client: Any, name: str, tag: str, auth: dict[str, str] | None,
          progress: BuildProgress) -> tuple[list[LayerOutcome], str]:
    bars: dict[str, Any] = {}
    sent: dict[str, int] = {}
    outcomes: dict[str, LayerOutcome] = {}
    digest = ""
    for event in client.images.push(name, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in event:
            raise ImageBuildError(f"pushing {name}:{tag} failed: {event['error']}")
        layer, status = event.get("id", ""), event.get("status", "")
        detail = event.get("progressDetail") or {}
        if status == "Pushing" and detail.get("total"):
            if layer not in bars:
                bars[layer], sent[layer] = progress.upload(f"layer {layer}", detail["total"]), 0
            bars[layer](max(0, detail.get("current", 0) - sent[layer]))
            sent[layer] = detail.get("current", 0)
        elif status == "Pushed" or status == "Layer already exists" or status.startswith("Mounted from"):
            kind = {"Pushed": "uploaded", "Layer already exists": "exists"}.get(status, "mounted")
            outcomes[layer] = LayerOutcome(f"layer {layer}", layer, sent.get(layer, 0), kind)
        aux = event.get("aux") or {}
        digest = aux.get("Digest", digest)
    if not digest:
        raise ImageBuildError(f"pushing {name}:{tag}: the engine did not report the pushed digest")
    return list(outcomes.values()), digest


def _buildx(name: str, tag: str, context: bytes, dockerfile_name: str, platform: str,
            build_kwargs: dict[str, Any], progress: BuildProgress) -> BuildReport:
    progress.step(f"building {name}:{tag} for {platform} with docker buildx (pushing as it goes)")
    with tempfile.TemporaryDirectory(prefix="pushpool-buildx-") as scratch:
        metadata = Path(scratch) / "metadata.json"
        command = ["docker", "buildx", "build", "--platform", platform, "--push", "--provenance=false",
                   "--file", dockerfile_name, "--tag", f"{name}:{tag}", "--metadata-file", str(metadata)]
        for key, value in (build_kwargs.get("buildargs") or {}).items():
            command += ["--build-arg", f"{key}={value}"]
        if build_kwargs.get("network_mode"):
            command += ["--network", str(build_kwargs["network_mode"])]
        result = subprocess.run([*command, "-"], input=context, capture_output=True, timeout=3600,
                                env={**os.environ})
        if result.returncode != 0:
            last = result.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise ImageBuildError("docker buildx build failed:\n" + "\n".join(last))
        digest = json.loads(metadata.read_text()).get("containerimage.digest", "")
    if not digest:
        raise ImageBuildError("docker buildx build did not report the pushed digest")
    return BuildReport(name, tag, digest, "docker")

