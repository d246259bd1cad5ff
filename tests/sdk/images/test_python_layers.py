"""Dependency and code layers built without Docker: amd64 wheels picked by pip for any machine."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from pushpool.images.python_layers import SITE_PACKAGES, ImageBuildError, code_layer, dependency_layer


def names(layer) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
        return tar.getnames()


def test_a_pure_python_dependency_lands_in_site_packages_and_twice_gives_the_same_digest():
    first = dependency_layer(["six==1.16.0"], python_version="3.11")
    assert f"{SITE_PACKAGES}/six.py" in names(first)
    assert dependency_layer(["six==1.16.0"], python_version="3.11").digest == first.digest


def test_a_dependency_without_an_amd64_wheel_is_named():
    with pytest.raises(ImageBuildError, match="'pushpool-no-such-package-xyz==1.0'.*backend='docker'"):
        dependency_layer(["pushpool-no-such-package-xyz==1.0"], python_version="3.11")


def test_the_code_layer_leaves_out_vcs_virtualenvs_and_caches(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text("print('etl')\n")
    for junk in (".git/config", ".venv/bin/python", "flows/__pycache__/etl.cpython-311.pyc"):
        (tmp_path / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / junk).write_text("x")
    assert names(code_layer(tmp_path)) == ["app", "app/flows", "app/flows/etl.py"]
