"""Image layers made from Python projects without Docker: dependencies as linux/amd64 wheels, and code.

The dependency layer is ``pip install --platform manylinux2014_x86_64 --implementation cp
--python-version X.Y --only-binary=:all: --target …`` run on this machine, whatever it is (an
Apple Silicon laptop included): pip picks the amd64 wheels, nothing is compiled, and a dependency
with no such wheel is an error naming it. Files land under ``SITE_PACKAGES`` (on the image's
``PYTHONPATH``), in a deterministic layer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pushpool.control_plane.errors import PushpoolError
from pushpool.images.layers import Layer, tar_layer

SITE_PACKAGES = "opt/pushpool/site-packages"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "linux_x86_64")
#: What never goes into a code layer.
IGNORED = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules",
           ".bench", ".idea", ".vscode"}


class ImageBuildError(PushpoolError):
    """An image could not be built; the message names the input at fault and the fix."""


LOCAL_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def dependency_layer(requirements: Iterable[str], python_version: str = LOCAL_PYTHON,
                     index_args: Iterable[str] = (), destination: str = SITE_PACKAGES,
                     extra_files: dict[str, bytes] | None = None, extra_executables: frozenset[str] = frozenset(),
                     ) -> Layer:
    """The linux/amd64 wheels of ``requirements`` (pip requirement strings) for CPython ``python_version``
    under ``destination``, plus ``extra_files`` (path in the image → content)."""
    wanted = [r.strip() for r in requirements if r.strip() and not r.strip().startswith("#")]
    with tempfile.TemporaryDirectory(prefix="pushpool-deps-") as target:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--no-warn-script-location",
                   "--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", python_version, "--target", target,
                   *[arg for platform in PLATFORMS for arg in ("--platform", platform)], *index_args, *wanted]
        if wanted:
            result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if result.returncode != 0:
                raise _explain(result.stderr or result.stdout, python_version)
        files, executables = collect_files(Path(target), destination)
        files = _without_host_scripts(files, destination)
        return tar_layer({**files, **(extra_files or {})}, executables | extra_executables)


def _without_host_scripts(files: dict[str, bytes], destination: str) -> dict[str, bytes]:
    """Drop the console scripts pip wrote for *this* machine's interpreter (their shebang names it) and
    their lines in RECORD, so the layer does not depend on where the build ran."""
    kept = {}
    for name, content in files.items():
        if name.startswith(f"{destination}/bin/"):
            continue
        if name.endswith(".dist-info/RECORD"):
            content = b"".join(line for line in content.splitlines(keepends=True) if not line.startswith(b"../"))
        kept[name] = content
    return kept


def _explain(output: str, python_version: str) -> ImageBuildError:
    missing = re.search(r"No matching distribution found for ([^\s]+)", output)
    if missing:
        return ImageBuildError(
            f"dependency {missing.group(1)!r} has no linux/amd64 wheel for CPython {python_version} (or no such "
            "release exists): pin a version "
            "that publishes one, or build with DockerImage(..., backend='docker') so it can be compiled")
    last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["pip failed"]
    return ImageBuildError(f"installing the dependencies failed: {last[0].strip()}")


def code_layer(project_root: Path, destination: str = "app") -> Layer:
    """The project's files (without VCS, virtualenvs and caches) under ``destination``."""
    return tar_layer(*collect_files(project_root, destination))


def collect_files(root: Path, prefix: str) -> tuple[dict[str, bytes], frozenset[str]]:
    """(path in the image → content, the executable ones) of the files under ``root``."""
    files: dict[str, bytes] = {}
    executables: set[str] = set()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in IGNORED or part.endswith(".pyc") for part in relative.parts) or not path.is_file():
            continue
        name = f"{prefix}/{relative.as_posix()}"
        files[name] = path.read_bytes()
        if os.access(path, os.X_OK):
            executables.add(name)
    return files, frozenset(executables)
