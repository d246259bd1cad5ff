"""Run an image as a container would, from what a registry holds: its layers unpacked into a directory
and its config's Cmd, Env and WorkingDir obeyed — with this machine's CPython standing in for the
base image's (started with ``-S``: no site-packages, so everything imported must come from the
image's own layers).

Absolute paths in PATH and PYTHONPATH are mapped into the unpacked root; the working directory is
the root's WorkingDir. Also: a tiny base image of our own making (no Docker Hub here), declaring the
Python it stands for like the official images do (``PYTHON_VERSION``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pushpool.images.layers import image_config, image_manifest, tar_layer
from pushpool.images.registry import Registry, split_reference

HOST_PREFIXES = ("PUSHPOOL_", "AWS_", "MODAL_", "PYTHON")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def push_base_image(registry: Registry, repository: str = "base/python", tag: str = "3.11") -> str:
    """A one-layer linux/amd64 'python' base image pushed as ``repository:tag``; returns its reference."""
    layer = tar_layer({"etc/os-release": b"ID=pushpool-test\n", "usr/local/bin/.keep": b""})
    config = image_config(None, [layer], env={"PATH": BASE_PATH, "PYTHON_VERSION": "3.11.7", "LANG": "C.UTF-8"},
                          cmd=["python3"])
    for blob in (layer, config):
        registry.push_blob(repository, blob)
    registry.push_manifest(repository, tag, image_manifest(config, [layer.descriptor()]))
    return f"{registry.host}/{repository}:{tag}"


def pull(reference: str, destination: Path, registry: Registry | None = None) -> tuple[dict[str, Any], dict]:
    """Unpack ``reference``'s linux/amd64 layers into ``destination``; (manifest, config)."""
    host, repository, ref = split_reference(reference)
    registry = registry or Registry(host)
    manifest, _ = registry.platform_manifest(repository, ref)
    for descriptor in manifest["layers"]:
        data = gzip.decompress(registry.get_blob(repository, descriptor["digest"]))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(destination, filter="data")
    return manifest, json.loads(registry.get_blob(repository, manifest["config"]["digest"]))


def layer_names(reference: str, registry: Registry) -> list[list[str]]:
    """The file names in each layer of ``reference``."""
    host, repository, ref = split_reference(reference)
    manifest, _ = registry.platform_manifest(repository, ref)
    out = []
    for descriptor in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(registry.get_blob(repository, descriptor["digest"])))) \
                as tar:
            out.append(tar.getnames())
    return out


def run_image(reference: str, env: dict[str, str] | None = None, command: list[str] | None = None,
              timeout: float = 60, registry: Registry | None = None) -> tuple[int, str]:
    """(exit code, output) of the image's Cmd (or ``command``) with its Env plus ``env``."""
    with tempfile.TemporaryDirectory(prefix="pushpool-image-") as scratch:
        argv, full_env, workdir = _container(reference, Path(scratch), env, command, registry)
        result = subprocess.run(argv, env=full_env, cwd=workdir, capture_output=True, text=True, timeout=timeout)
        return result.returncode, result.stdout + result.stderr


@contextmanager
def started_image(reference: str, scratch: Path, env: dict[str, str] | None = None,
                  command: list[str] | None = None, registry: Registry | None = None) -> Iterator[subprocess.Popen]:
    """The image's Entrypoint + Cmd (or ``command``) running in the background (output in ``scratch``/output.log);
    terminated on leaving."""
    argv, full_env, workdir = _container(reference, scratch, env, command, registry)
    with (scratch / "output.log").open("wb") as log:
        process = subprocess.Popen(argv, env=full_env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _container(reference: str, scratch: Path, env: dict[str, str] | None, command: list[str] | None,
               registry: Registry | None) -> tuple[list[str], dict[str, str], Path]:
    """(argv, environment, working directory) of the image's process, its layers unpacked under ``scratch``."""
    root = scratch / "rootfs"
    _, config = pull(reference, root, registry)
    runtime = config.get("config") or {}
    shims = scratch / "shims"
    shims.mkdir()
    for name in ("python3", "python"):
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec {sys._base_executable} -S "$@"\n')
        shim.chmod(0o755)
    image_env = dict(item.split("=", 1) for item in runtime.get("Env") or [])
    for key in ("PATH", "PYTHONPATH"):
        if key in image_env:
            image_env[key] = ":".join(f"{root}{p}" if p.startswith("/") else p for p in image_env[key].split(":"))
    image_env["PATH"] = f"{shims}:{image_env.get('PATH', '')}:/usr/bin:/bin"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(HOST_PREFIXES) and k != "PATH"}
    full_env.update(image_env)
    full_env.update(env or {})
    argv = list(command or [*(runtime.get("Entrypoint") or []), *(runtime.get("Cmd") or [])])
    if command and runtime.get("Entrypoint"):
        argv = [*runtime["Entrypoint"], *command]  # as `docker run IMAGE ARGS`: the args replace Cmd only
    program = next((str(Path(d) / argv[0]) for d in image_env["PATH"].split(":")
                    if "/" not in argv[0] and (Path(d) / argv[0]).is_file()), argv[0])
    workdir = root / (runtime.get("WorkingDir") or "/").lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    return [program, *argv[1:]], full_env, workdir
