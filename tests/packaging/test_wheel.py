"""The built wheel installs one top-level name, ``pushpool``, and works from a fresh virtual environment.

The wheel is built from this checkout (pip, with the build backend from the registry) and installed with
``--no-deps`` into a new venv whose only other path entry is this venv's site-packages (for the
dependencies; its ``.pth`` import hooks, such as the editable install's, are not processed there).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = out.glob("pushpool-*.whl")
    env_dir = out / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def run_in(env_dir: Path, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "python"), "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_only_pushpool_is_installed_at_the_top_level(fresh_venv):
    site = next((fresh_venv / "lib").glob("python3*/site-packages"))
    ours = {p.name for p in site.iterdir() if p.name != "zz_dependencies.pth" and not p.name.startswith("_")}
    assert {name for name in ours if not name.endswith(".dist-info")} == {"pushpool"}
    assert (site / "pushpool" / "control_plane" / "lambda_handler.py").is_file()
    assert (site / "pushpool" / "infra" / "pushpool.yaml").is_file()


def test_import_pushpool_works_and_the_generic_names_do_not(fresh_venv, tmp_path):
    done = run_in(fresh_venv, """
        import importlib.util
        import pushpool
        from pushpool import DockerImage, deploy, flow, run_deployment
        import pushpool.control_plane.app, pushpool.pushers.ecs, pushpool.provisioners.aws, pushpool.cli.main
        print(pushpool.__version__, flow.__module__)
        print([n for n in ("sdk", "infra", "control_plane", "pushers", "provisioners", "docs")
               if importlib.util.find_spec(n) is not None])
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    version, missing = done.stdout.splitlines()
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version == f"{expected} pushpool.flows" and missing == "[]"


def test_the_console_scripts_run(fresh_venv, tmp_path):
    done = subprocess.run([str(fresh_venv / "bin" / "pushpool"), "--help"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0 and "work-pool" in done.stdout, done.stderr
    runner = subprocess.run([str(fresh_venv / "bin" / "pushpool-runner")], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert runner.returncode == 2 and "PUSHPOOL_API_URL" in runner.stderr + runner.stdout


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by hand (the folders are mapped): a new folder must be added. A folder
    of data only (the dashboard's templates) is listed too, with its files in package-data."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = {"sdk": "pushpool", "control_plane": "pushpool.control_plane", "pushers": "pushpool.pushers",
               "provisioners": "pushpool.provisioners", "infra": "pushpool.infra"}

    def folder_of(package: str) -> Path:
        folder, prefix = max(((f, p) for f, p in mapping.items() if package == p or package.startswith(p + ".")),
                             key=lambda pair: len(pair[1]))
        return REPO / folder / Path(*package.removeprefix(prefix).lstrip(".").split(".") or ["."])

    data_only = {p for p in setuptools["package-data"] if not (folder_of(p) / "__init__.py").exists()}
    assert all(folder_of(p).is_dir() for p in data_only), data_only
    listed = set(setuptools["packages"]) - data_only
    found = set()
    for folder, package in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed
    assert data_only <= set(setuptools["packages"])  # a data folder must be listed, or setuptools warns
