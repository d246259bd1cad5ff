"""The control plane's own container image, made by the daemonless builder (no Docker needed).

``pushpool server image REGISTRY/REPOSITORY`` builds a linux/amd64 image of this pushpool release for
running replicas on Cloud Run, Azure Container Apps, Kubernetes or any container host:

* the base image's layers (``python:X.Y-slim`` by default; its ``PYTHON_VERSION`` picks the wheels);
* a dependency layer: pushpool's server dependencies, the ``postgresql`` extra and the cloud extras asked
  for (``--extra gcp`` …: the SDKs the pushers of those clouds import), all as linux/amd64 wheels;
* a code layer: the ``pushpool`` package (control plane, pushers, CLI) and a ``pushpool`` launcher.

It starts ``pushpool server start`` on ``0.0.0.0:$PORT`` (8080 unless the platform sets ``PORT``, as Cloud
Run does), as an unprivileged user (65532), with its home in ``/tmp/pushpool``. It does not create a first
key on start (``PUSHPOOL_BOOTSTRAP=false``): a replica's profile dies with its container, so the owner key
is made once by ``pushpool server bootstrap``, run as a one-off job of the same image, which prints it.
The tag defaults to a digest of every input, so an unchanged release pushes nothing.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from pushpool.images.build import cached_layer, check_daemonless, push_image, read_base
from pushpool.images.credentials import credentials_for, ensure_repository
from pushpool.images.layers import Layer, canonical, config_env, image_config, sha256, tar_layer
from pushpool.images.progress import BuildProgress
from pushpool.images.project import SUBPACKAGES, pushpool_files
from pushpool.images.python_layers import LOCAL_PYTHON, ImageBuildError, dependency_layer
from pushpool.images.registry import Registry, target_repository
from pushpool.images.report import BuildReport

#: Where things live in the server image.
SERVER_DIR = "opt/pushpool/server"
SERVER_SITE_PACKAGES = "opt/pushpool/server-packages"
SERVER_LAUNCHER = "opt/pushpool/bin/pushpool"
LAUNCHER = b'#!/bin/sh\nexec python3 -m pushpool.cli.main "$@"\n'
#: The extra every server image has (replicas share a PostgreSQL database) and the ones a user may add.
ALWAYS = ("postgresql",)
#: Extras that are not for the server: the test tools, the Docker image backend, the Lambda adapter.
NOT_FOR_SERVERS = ("dev", "docker", "lambda")
PORT = "8080"
#: A user id with no account in the base image: the server needs no privileges.
SERVER_USER = "65532"
SERVER_ENV = {"PUSHPOOL_HOST": "0.0.0.0", "PORT": PORT, "PUSHPOOL_HOME": "/tmp/pushpool",
              "PUSHPOOL_BOOTSTRAP": "false", "PUSHPOOL_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
              "PYTHONDONTWRITEBYTECODE": "1"}


def available_extras() -> list[str]:
    """The extras a server image can be built with (the clouds' SDKs), from this pushpool's metadata."""
    provided = _metadata().get_all("Provides-Extra") or []
    return sorted(extra for extra in provided if extra not in NOT_FOR_SERVERS + ALWAYS)


def server_requirements(extras: tuple[str, ...] = ()) -> list[str]:
    """pushpool's own requirements plus those of the ``postgresql`` extra and of ``extras``, markers kept."""
    allowed = available_extras()
    unknown = sorted(set(extras) - set(allowed))
    if unknown:
        raise ImageBuildError(f"--extra: {unknown[0]!r} is not one of {', '.join(allowed)}")
    wanted = set(ALWAYS) | set(extras)
    requirements = []
    for requirement in _metadata().get_all("Requires-Dist") or []:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra is None:
            requirements.append(requirement.strip())
        elif extra.group(1) in wanted:
            rest = re.sub(r"""(\s*(and|or)\s*)?extra\s*==\s*["'][^"']+["']""", "", marker).strip()
            requirements.append(spec.strip() + (f"; {rest}" if rest else ""))
    return sorted(set(requirements))


def server_code_layer() -> Layer:
    """The ``pushpool`` package with all of its subpackages, and the ``pushpool`` launcher."""
    files = pushpool_files(SERVER_DIR, SUBPACKAGES)
    files[SERVER_LAUNCHER] = LAUNCHER
    return tar_layer(files, frozenset({SERVER_LAUNCHER}))


def build_server_image(name: str, *, tag: str | None = None, base_image: str | None = None,
                       extras: tuple[str, ...] = (), namespace: str | None = None, quiet: bool = False,
                       registry_for=None) -> BuildReport:
    """Build the control-plane image ``name`` (``registry/repository``) and push it; prints progress on stderr."""
    platform = "linux/amd64"
    check_daemonless(platform, push=True)
    requirements = server_requirements(extras)
    if namespace is None:
        from pushpool.settings import ClientSettings

        namespace = ClientSettings().build_namespace
    host, repository = target_repository(name, namespace)
    registry_for = registry_for or (lambda registry_host: Registry(registry_host, credentials_for(registry_host)))
    with BuildProgress(quiet) as progress:
        progress.step(f"building the control-plane image {host}/{repository} ({platform}, daemonless)")
        if ensure_repository(host, repository):
            progress.step(f"created repository {repository} in {host}")
        target = registry_for(host)
        base = read_base(base_image or f"python:{LOCAL_PYTHON}-slim", host, target, platform, registry_for, progress)
        python_version = base.python_version
        code = server_code_layer()
        fingerprint = sha256(canonical({"kind": "server", "base": base.digest, "python": python_version,
                                        "requirements": requirements, "code": code.digest}))
        if tag is None:
            tag = fingerprint[7:23]
            existing = target.manifest_digest(repository, tag)
            if existing:
                report = BuildReport(f"{host}/{repository}", tag, existing, "daemonless", up_to_date=True)
                progress.summary(report.summary())
                return report
        progress.step(f"dependency layer ({len(requirements)} requirements, CPython {python_version} wheels)")
        dependencies = cached_layer(
            {"kind": "server-dependencies", "requirements": requirements, "python": python_version,
             "platform": platform},
            lambda: dependency_layer(requirements, python_version, destination=SERVER_SITE_PACKAGES))
        ours = [("server dependencies", dependencies), ("pushpool", code)]
        base_path = config_env(base.config).get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env = {**SERVER_ENV, "PATH": f"/{Path(SERVER_LAUNCHER).parent}:{base_path}",
               "PYTHONPATH": f"/{SERVER_DIR}:/{SERVER_SITE_PACKAGES}"}
        config = image_config(base.config, [layer for _, layer in ours], env=env, entrypoint=["pushpool"],
                              cmd=["server", "start"], working_dir="/tmp", platform=platform, user=SERVER_USER,
                              exposed_ports=(f"{PORT}/tcp",))
        report = push_image(target, repository, tag, base, ours, config, progress)
        progress.summary(report.summary())
    return report


def _metadata() -> importlib.metadata.PackageMetadata:
    try:
        return importlib.metadata.metadata("pushpool")
    except importlib.metadata.PackageNotFoundError:
        raise ImageBuildError("pushpool is not installed (pip install -e . in a checkout): its requirements "
                              "come from the installed distribution's metadata") from None
