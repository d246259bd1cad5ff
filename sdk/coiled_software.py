"""Deploying to a ``coiled:push`` pool without an image: a Coiled software environment made from the project.

``flow.deploy(..., image=None)`` on a ``coiled:push`` pool (and no ``container``/``software`` job variable)
comes here. The environment holds:

* the project's requirements (``requirements.txt``, else ``[project].dependencies``) and the runner's own,
  as pip requirements Coiled installs for the VM's Python (the same version as this one);
* one wheel made here, uploaded to Coiled with the environment: pushpool's runtime (the package the
  runner imports, with a ``pushpool-runner`` script) and the project's files as the ``pushpool_project``
  package, where the runner finds the deployment's entrypoint (``PUSHPOOL_PROJECT_PACKAGE``).

Its name is ``pushpool-`` and a digest of all of that (requirements, runtime, files, architecture, GPU), so
an unchanged project deploys to the environment it already has — the way an image is recorded by digest —
and the deployment records the name as its ``software`` job variable. The user's own Coiled login (``coiled
login`` on this machine) makes it, in the pool's workspace.
"""

from __future__ import annotations

import base64
import hashlib
import io
import platform
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushpool.control_plane.errors import PushpoolError
from pushpool.images.project import RUNTIME_DIR, project_requirements, pushpool_runtime
from pushpool.images.python_layers import collect_files
from pushpool.pushers.coiled import PROJECT_PACKAGE  # the package the runner is told to find the project in

DISTRIBUTION = "pushpool_project"
#: Coiled's limit for an uploaded package is generous; a project bigger than this is almost surely carrying
#: data or a virtualenv it should not (say so rather than upload it).
MAX_BUNDLE_BYTES = 100 * 1024 * 1024


class CoiledSoftwareError(PushpoolError):
    """The project's Coiled software environment could not be made; the message names the cause and the fix."""


def bundle_files(project_root: Path) -> dict[str, bytes]:
    """Path in the wheel → content: pushpool's runtime as ``pushpool/``, the project as ``pushpool_project/``."""
    runtime = pushpool_runtime()
    files = {name.removeprefix(f"{RUNTIME_DIR}/"): data for name, data in runtime.files.items()
             if name.startswith(f"{RUNTIME_DIR}/")}
    project, _ = collect_files(project_root, PROJECT_PACKAGE)
    files.update(project)
    files.setdefault(f"{PROJECT_PACKAGE}/__init__.py", b"")
    return files


def environment_name(requirements: list[str], files: dict[str, bytes], *, arm: bool, gpu: bool) -> str:
    digest = hashlib.sha256()
    for requirement in requirements:
        digest.update(b"req\0" + requirement.encode() + b"\n")
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    digest.update(f"python={platform.python_version()};arm={arm};gpu={gpu}".encode())
    return f"pushpool-{digest.hexdigest()[:16]}"


def build_wheel(files: dict[str, bytes], version: str) -> tuple[str, bytes]:
    """(file name, bytes) of a pure-Python wheel of ``files`` with a ``pushpool-runner`` console script."""
    dist_info = f"{DISTRIBUTION}-{version}.dist-info"
    metadata = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: pushpool\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": b"[console_scripts]\npushpool-runner = pushpool.runner:main\n",
        f"{dist_info}/top_level.txt": f"pushpool\n{PROJECT_PACKAGE}\n".encode(),
    }
    everything = {**files, **metadata}
    record = []
    for name in sorted(everything):
        digest = base64.urlsafe_b64encode(hashlib.sha256(everything[name]).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(everything[name])}")
    record.append(f"{dist_info}/RECORD,,")
    everything[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name in sorted(everything):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # the same project, the same bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, everything[name])
    return f"{DISTRIBUTION}-{version}-py3-none-any.whl", buffer.getvalue()


def ensure_environment(project_root: Path, *, workspace: str | None, arm: bool = False, gpu: bool = False,
                       say: Callable[[str], None] = lambda _: None) -> str:
    """The name of the project's Coiled software environment in ``workspace``, made (and built) when missing."""
    requirements, source = project_requirements(project_root)
    requirements = [*requirements, *pushpool_runtime().requirements]
    files = bundle_files(project_root)
    name = environment_name(requirements, files, arm=arm, gpu=gpu)
    wheel_name, wheel = build_wheel(files, f"0+{name.removeprefix('pushpool-')}")
    if len(wheel) > MAX_BUNDLE_BYTES:
        raise CoiledSoftwareError(f"the project at {project_root} is {len(wheel) / 2**20:.0f} MB zipped: move data "
                                  "and virtualenvs out of it (or list them in .gitignore-like IGNORED names), or "
                                  "deploy with an image")
    say(f"Coiled software environment {name}: {len(requirements)} requirements (from {source} and the pushpool "
        f"runner), the project and runner as {wheel_name} ({len(wheel) / 1024:.0f} KB)")
    try:
        import coiled
        from coiled.software import create_env_spec
        from coiled.types import ArchitectureTypesEnum
    except ModuleNotFoundError:
        raise CoiledSoftwareError("deploying to a coiled:push pool without an image needs the 'coiled' extra: "
                                  "pip install 'pushpool[coiled]' (or give the deployment an image)") from None
    architecture = ArchitectureTypesEnum.ARM64 if arm else ArchitectureTypesEnum.X86_64

    async def make(cloud: Any) -> str:
        spec = await create_env_spec(pip=requirements)
        upload = io.BytesIO(wheel)
        upload.name = wheel_name
        file_id = await cloud._create_senv_package(package_file=upload, contents_md5=hashlib.md5(wheel).hexdigest(),
                                                   workspace=cloud_workspace(cloud))
        spec["packages"].append({"name": DISTRIBUTION, "source": "pip", "channel": None, "conda_name": None,
                                 "client_version": None, "include": True, "specifier": "", "file": file_id})
        alias = await cloud._create_software_environment_v2(
            senv=spec, name=name, workspace=cloud_workspace(cloud), force_rebuild=False, use_entrypoint=True,
            gpu_enabled=gpu, architecture=architecture, region_name=None, use_uv_installer=True)
        build = ((alias or {}).get("latest_spec") or {}).get("latest_build") or {}
        if build and build.get("state") != "built":
            say(f"Coiled is building {name} (a few minutes the first time; its log follows)")
            state = await cloud._tail_software_build_logs(build["id"], workspace=cloud_workspace(cloud),
                                                          log_output=_Lines(say))
            if state != "built":
                raise CoiledSoftwareError(f"Coiled could not build the software environment {name}: see its log "
                                          "above; fix the requirement it names in "
                                          f"{source if source != 'none' else 'requirements.txt'}")
        return name

    from pushpool.provisioners.coiled import read_login
    from pushpool.pushers.coiled import verify_token

    login = read_login()
    account = verify_token(login.token, workspace, login.server)  # fails fast: the client would start a login
    try:
        with coiled.Cloud(token=login.token, server=login.server, workspace=account.workspace) as cloud:
            return cloud._sync(make, cloud)
    except PushpoolError:
        raise
    except Exception as exc:  # noqa: BLE001 - the client's own errors, said in one line
        message = " ".join(str(exc).split())
        raise CoiledSoftwareError(f"making the Coiled software environment {name} failed ({type(exc).__name__}: "
                                  f"{message}; coiled client {coiled.__version__})") from None


def pool_workspace(client: Any, pool: dict[str, Any]) -> str | None:
    """The Coiled workspace a pool runs in: its ``workspace`` variable, else its credentials block's."""
    properties = ((pool.get("base_job_template") or {}).get("variables") or {}).get("properties") or {}
    if (properties.get("workspace") or {}).get("default"):
        return str(properties["workspace"]["default"])
    reference = str((properties.get("coiled_credentials") or {}).get("default") or "")
    match = re.fullmatch(r"\{\{\s*pushpool\.blocks\.([A-Za-z0-9_-]+)\s*\}\}", reference)
    if not match:
        return None
    block = client.request("GET", client.ws(f"/blocks/{match.group(1)}"))
    return (block.get("data") or {}).get("workspace") or None


def software_job_variables(client: Any, pool: dict[str, Any], project_root: Path, job_variables: dict[str, Any],
                           say: Callable[[str], None]) -> dict[str, Any]:
    """The deployment's job variables with ``software`` set to the project's environment (made when missing)."""
    workspace = job_variables.get("workspace") or pool_workspace(client, pool)
    name = ensure_environment(project_root, workspace=workspace, arm=bool(job_variables.get("arm")),
                              gpu=bool(job_variables.get("gpu")), say=say)
    return {**job_variables, "software": name}


def cloud_workspace(cloud: Any) -> str:
    return str(cloud.default_workspace)


class _Lines(io.StringIO):
    """A text stream for the client's build log that hands each line to ``say``."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self._say = say

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._say(f"  {line}")
        return len(text)
