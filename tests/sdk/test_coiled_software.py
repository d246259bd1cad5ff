"""The bundle a dockerless ``coiled:push`` deploy uploads: a valid wheel of the runner and the project, named by
its content (the end-to-end path is in tests/e2e/test_coiled_loop.py)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from pushpool.coiled_software import build_wheel, bundle_files, environment_name
from pushpool.runner import project_root


def project(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "flows.py").write_text("from pkg.steps import VALUE\n")
    (root / "pkg" / "steps.py").write_text("VALUE = 42\n")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "big.so").write_bytes(b"\0" * 1000)
    return root


def test_the_bundle_holds_the_runtime_and_the_project_and_nothing_ignored(tmp_path):
    files = bundle_files(project(tmp_path))
    assert "pushpool/runner.py" in files and "pushpool/control_plane/errors.py" in files
    assert "pushpool_project/flows.py" in files and "pushpool_project/pkg/steps.py" in files
    assert not any(".venv" in name or name.startswith("pushpool/pushers/") for name in files)


def test_the_name_follows_the_content(tmp_path):
    root = project(tmp_path)
    name = environment_name(["httpx"], bundle_files(root), arm=False, gpu=False)
    assert name == environment_name(["httpx"], bundle_files(root), arm=False, gpu=False)
    assert name != environment_name(["httpx"], bundle_files(root), arm=True, gpu=False)
    assert name != environment_name(["httpx", "numpy"], bundle_files(root), arm=False, gpu=False)
    (root / "pkg" / "steps.py").write_text("VALUE = 43\n")
    assert name != environment_name(["httpx"], bundle_files(root), arm=False, gpu=False)


def test_the_wheel_installs_with_pip_and_gives_the_runner_script(tmp_path):
    file_name, wheel = build_wheel(bundle_files(project(tmp_path)), "0+abc123")
    assert build_wheel(bundle_files(project(tmp_path / "again")), "0+abc123")[1] == wheel  # byte for byte
    path = tmp_path / file_name
    path.write_bytes(wheel)
    assert zipfile.ZipFile(path).testzip() is None
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(path)], check=True, capture_output=True)
    assert (target / "pushpool_project" / "pkg" / "steps.py").read_text() == "VALUE = 42\n"
    assert "pushpool.runner" in (target / "bin" / "pushpool-runner").read_text()


def test_the_runner_finds_the_project_in_the_package_it_is_told(tmp_path, monkeypatch):
    monkeypatch.delenv("PUSHPOOL_PROJECT_PACKAGE", raising=False)
    assert project_root() is None  # the working directory
    (tmp_path / "bundled_project").mkdir()
    (tmp_path / "bundled_project" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PUSHPOOL_PROJECT_PACKAGE", "bundled_project")
    assert project_root() == tmp_path / "bundled_project"
    monkeypatch.setenv("PUSHPOOL_PROJECT_PACKAGE", "not_installed_here")
    assert project_root() is None  # e.g. the user's own software environment: the working directory
