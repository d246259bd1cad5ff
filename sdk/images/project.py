"""What an image is built from: the project's requirements, its files, and the pushpool runtime.

* Requirements: ``requirements.txt`` in the project root when there is one, else the
  ``[project].dependencies`` of its ``pyproject.toml``, else none.
* The runtime: pushpool's own packages that the in-container runner imports (``sdk`` and
  ``control_plane``, copied from wherever this pushpool is installed, so an editable checkout
  works as well as a wheel), their dependencies as requirement strings taken from the installed
  distribution's metadata, and a ``pushpool-runner`` launcher script.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pushpool.images.python_layers import IGNORED, ImageBuildError

#: Where things live inside an image.
APP_DIR = "app"
RUNTIME_DIR = "opt/pushpool/runtime"
BIN_DIR = "opt/pushpool/bin"
#: pushpool's packages the runner needs in a container.
#: Of pushpool's dependencies, those the runner imports (the server's stay out of images).
RUNTIME_DISTRIBUTIONS = ("httpx", "pydantic", "pydantic-settings", "python-dotenv", "croniter", "python-dateutil",
                         "rich", "tomli-w", "pyyaml")
LAUNCHER_PATH = f"{BIN_DIR}/pushpool-runner"
LAUNCHER = b'#!/bin/sh\nexec python3 -m pushpool.runner "$@"\n'


def project_requirements(root: Path) -> tuple[list[str], str]:
    """(requirement strings, where they came from) for the project at ``root``."""
    requirements = root / "requirements.txt"
    if requirements.is_file():
        lines = []
        for raw in requirements.read_text().splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-"):
                raise ImageBuildError(f"{requirements}: pip option {line!r} is not supported by the daemonless "
                                      "backend; list plain requirements, or build with backend='docker'")
            lines.append(line)
        return lines, "requirements.txt"
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ImageBuildError(f"{pyproject}: not valid TOML ({exc})") from None
        dependencies = (data.get("project") or {}).get("dependencies") or []
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise ImageBuildError(f"{pyproject}: [project].dependencies must be a list of requirement strings")
        return list(dependencies), "pyproject.toml"
    return [], "none"


@dataclass(frozen=True)
class Runtime:
    """pushpool's runner as it goes into an image: files (path in the image → content) and requirements."""

    files: dict[str, bytes]
    requirements: list[str]

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        digest.update("\n".join(self.requirements).encode())
        return digest.hexdigest()


#: The subpackages of ``pushpool`` (each its own folder in a checkout, inside ``pushpool/`` in a wheel).
SUBPACKAGES = ("control_plane", "pushers", "provisioners", "infra")


def pushpool_files(destination: str, subpackages: tuple[str, ...]) -> dict[str, bytes]:
    """The ``pushpool`` package with ``subpackages`` of its own, as files under ``destination``/pushpool."""
    import importlib

    files: dict[str, bytes] = {}
    for name in ("", *subpackages):
        module = importlib.import_module(f"pushpool.{name}" if name else "pushpool")
        package_dir = Path(module.__file__).resolve().parent
        prefix = f"{destination}/pushpool" + (f"/{name}" if name else "")
        for path in sorted(package_dir.rglob("*")):
            relative = path.relative_to(package_dir)
            if not name and relative.parts[0] in SUBPACKAGES:
                continue  # each subpackage is its own entry (and in a wheel they lie inside pushpool/)
            if path.is_file() and not any(p in IGNORED for p in relative.parts) and path.suffix != ".pyc":
                files[f"{prefix}/{relative.as_posix()}"] = path.read_bytes()
    return files


def pushpool_runtime() -> Runtime:
    """The ``pushpool`` package (the SDK with ``pushpool.control_plane``), as it lies in an image."""
    files = pushpool_files(RUNTIME_DIR, ("control_plane",))
    files[LAUNCHER_PATH] = LAUNCHER
    return Runtime(files, runtime_requirements())


def runtime_requirements() -> list[str]:
    """The runner's dependencies with the version ranges this pushpool declares."""
    try:
        declared = importlib.metadata.requires("pushpool") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    by_name = {}
    for requirement in declared:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        by_name[name.lower().replace("_", "-")] = requirement.split(";")[0].strip()
    return [by_name.get(name, name) for name in RUNTIME_DISTRIBUTIONS]
