"""Builds the control plane's Lambda package: a zip for linux x86_64 and the Lambda Python runtime.

Dependencies come from the package registry as manylinux wheels for the target
Python (``pip install --platform ... --only-binary=:all: --target``), whatever the
machine building it runs, so an Apple Silicon laptop builds a package that runs on
Lambda. Only what the control plane needs goes in: no provider SDK beyond boto3
(which the Lambda runtime already has) unless asked for with ``extras``.

The zip is deterministic (sorted entries, fixed timestamps and modes), so an
unchanged control plane gives the same file name and digest, and a redeploy does not
upload or update anything.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pushpool.provisioners.base import ProvisioningError

#: What the control plane imports on Lambda (kept in step with pyproject.toml; a test checks it).
LAMBDA_REQUIREMENTS = [
    "fastapi>=0.115",
    "pydantic>=2.7",
    "pydantic-settings>=2.3",
    "python-dotenv>=1.0",
    "croniter>=2.0",
    "python-dateutil>=2.9",
    "cryptography>=42",
    "jsonschema>=4.21",
    "mangum>=0.17",
    "tzdata",  # zoneinfo's data: the Lambda image may lack /usr/share/zoneinfo
]
#: Optional provider SDKs, for pools whose pushers need them on the control plane.
EXTRAS = {
    "aws": ["boto3>=1.34"],
    "gcp": ["google-cloud-run>=0.10", "google-cloud-logging>=3.10"],
    "azure": ["azure-mgmt-containerinstance>=10.1", "azure-identity>=1.16"],
    "modal": ["modal>=1.6,<1.7"],  # the range pushers.modal is tested with (MODAL_TESTED)
    "coiled": ["coiled>=1.130,<1.136"],  # the range pushers.coiled is tested with (COILED_TESTED)
}
#: Our own packages in the zip, under ``pushpool/`` (the SDK, CLI and provisioners stay on users'
#: machines; only the package's ``__init__``, which imports nothing until asked, comes along).
SOURCE_PACKAGES = ("control_plane", "pushers")
#: Lambda's limit for a package uploaded through S3, as ``control-plane deploy`` does. (The 50 MB zipped limit is
#: for a package uploaded in the CreateFunction/UpdateFunctionCode call itself: AccountLimit.CodeSizeZipped, "Use
#: Amazon S3 for larger files".)
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
#: Manylinux tags the Lambda Python 3.12/3.13 runtimes (Amazon Linux 2023, glibc 2.34) can load.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", "tests"}


@dataclass(frozen=True)
class LambdaPackage:
    path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    python_version: str


def build_package(out_dir: Path, *, python_version: str = "3.13", extras: tuple[str, ...] = (),
                  log: Callable[[str], None] = lambda _: None) -> LambdaPackage:
    """Build (or reuse) the package in ``out_dir``; raises ProvisioningError with pip's reason on failure."""
    unknown = set(extras) - set(EXTRAS)
    if unknown:
        raise ProvisioningError(f"unknown extra {sorted(unknown)[0]!r}: choose from {', '.join(EXTRAS)}")
    requirements = LAMBDA_REQUIREMENTS + [r for extra in extras for r in EXTRAS[extra]]
    with tempfile.TemporaryDirectory(prefix="pushpool-lambda-") as tmp:
        target = Path(tmp) / "package"
        log(f"Installing {len(requirements)} requirements for CPython {python_version} on linux x86_64 ...")
        _pip_install(target, requirements, python_version)
        (target / "pushpool").mkdir()
        shutil.copyfile(_source_dir("pushpool") / "__init__.py", target / "pushpool" / "__init__.py")
        for name in SOURCE_PACKAGES:
            source = _source_dir(f"pushpool.{name}")
            shutil.copytree(source, target / "pushpool" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        log("Zipping ...")
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tmp) / "package.zip"
        unzipped = _zip_dir(target, staging)
        digest = hashlib.sha256(staging.read_bytes()).hexdigest()
        final = out_dir / f"pushpool-lambda-py{python_version}-{digest[:16]}.zip"
        shutil.move(staging, final)
    package = LambdaPackage(final, digest, final.stat().st_size, unzipped, python_version)
    check_limits(package)
    return package


def check_limits(package: LambdaPackage) -> None:
    if package.unzipped_bytes > MAX_UNZIPPED_BYTES:
        raise ProvisioningError(f"the Lambda package is {package.unzipped_bytes / 2**20:.1f} MB unzipped, over "
                                "Lambda's 250 MB limit: leave out extras the control plane does not need")


def _pip_install(target: Path, requirements: list[str], python_version: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--target", str(target), "--implementation", "cp", "--python-version", python_version,
               "--only-binary=:all:"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    result = subprocess.run(command + requirements, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with {result.returncode}"
        raise ProvisioningError(f"building the Lambda package failed: {reason} (every dependency needs a "
                                f"linux x86_64 wheel for CPython {python_version})")


def _source_dir(package: str) -> Path:
    module = importlib.import_module(package)
    return Path(module.__file__).resolve().parent


def _zip_dir(root: Path, destination: Path) -> int:
    """Zip ``root`` reproducibly; return the unzipped size."""
    total = 0
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        files += [Path(dirpath) / f for f in filenames if not f.endswith(".pyc")]
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            total += len(data)
            archive.writestr(info, data)
    return total
