"""The Lambda package, built for real (manylinux wheels for CPython 3.13 from the package registry)."""

from __future__ import annotations

import re
import tomllib
import zipfile
from pathlib import Path

import pytest

from pushpool.provisioners.base import ProvisioningError
from pushpool.provisioners.lambda_package import LAMBDA_REQUIREMENTS, build_package

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_package(tmp_path_factory.mktemp("lambda"))


def test_the_package_holds_the_control_plane_and_its_dependencies_for_linux_x86_64(package):
    names = zipfile.ZipFile(package.path).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"pushpool", "fastapi", "mangum", "pydantic_core", "cryptography", "croniter"} <= tops
    assert "pushpool/control_plane/lambda_handler.py" in names and "pushpool/pushers/ecs.py" in names
    ours = {n.split("/")[1] for n in names if n.startswith("pushpool/")}
    assert ours == {"__init__.py", "control_plane", "pushers"}  # not the SDK, CLI or provisioners
    assert not tops & {"sdk", "control_plane", "pushers", "provisioners", "tests", "boto3", "botocore", "google",
                       "azure", "modal"}
    assert any(re.fullmatch(r"pydantic_core/_pydantic_core\.cpython-313-x86_64-linux-gnu\.so", n) for n in names)
    assert not any("__pycache__" in n for n in names)
    assert package.unzipped_bytes < 250 * 2**20


def test_an_unchanged_build_is_byte_for_byte_the_same(package, tmp_path):
    again = build_package(tmp_path)
    assert again.sha256 == package.sha256 and again.path.name == package.path.name


def test_requirements_follow_pyproject():
    """Every runtime dependency the control plane shares with pyproject.toml has the same lower bound."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"[<>=]", r)[0]: r for r in declared["dependencies"] + declared["optional-dependencies"]["lambda"]}
    for requirement in LAMBDA_REQUIREMENTS:
        name = re.split(r"[<>=]", requirement)[0]
        if name in pins:
            assert pins[name] == requirement, name


def test_an_unknown_extra_is_refused(tmp_path):
    with pytest.raises(ProvisioningError, match="unknown extra 'kubernetes'"):
        build_package(tmp_path, extras=("kubernetes",))


@pytest.mark.slow
def test_the_coiled_extra_fits_within_lambda_limit(tmp_path):
    """`control-plane deploy --extra coiled`: the client and its dask stack, 135 MB unzipped when measured."""
    package = build_package(tmp_path, extras=("coiled",))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(package.path).namelist()}
    assert {"coiled", "dask", "distributed", "aiohttp"} <= tops
    assert package.unzipped_bytes < 250 * 2**20
