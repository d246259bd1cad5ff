"""The daemonless backend end to end against a real registry: build → push → pull back and run it."""

from __future__ import annotations

import base64
import json

import pytest

from pushpool.images import DockerImage, ImageBuildError
from pushpool.images.project import project_requirements
from pushpool.images.registry import Registry, RegistryError
from tests.fakes.images import layer_names, push_base_image, run_image
from tests.registry_fixtures import PASSWORD, USER

FLOW = '''import six
from pushpool import flow


@flow
def etl(rows: int = 3):
    print(f"six {six.__version__}: loaded {rows} rows")
    return rows
'''


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "helpers").mkdir(parents=True)
    (root / "flows.py").write_text(FLOW)
    (root / "helpers" / "util.py").write_text("VALUE = 1\n")
    (root / "requirements.txt").write_text("six==1.16.0  # a pure-Python wheel\n")
    for own in ("sdk", "infra"):  # packages of the user's own, named as pushpool's folders are
        (root / own).mkdir()
        (root / own / "__init__.py").write_text(f"MINE = {own!r}\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


@pytest.fixture
def base(registry):
    return push_base_image(registry)


def build(registry, base, project, name=None, **options):
    name = name or f"team/{project.parent.name.lower()}"  # a repository per test: the registry is shared
    image = DockerImage(f"{registry.host}/{name}", base_image=base, backend="daemonless", **options)
    return image.build(project, quiet=True)


def test_build_push_and_pull_back_an_amd64_image_that_runs_the_runner(registry, base, project):
    report = build(registry, base, project, name="team/flows")
    assert report.reference == f"{registry.host}/team/flows@{report.digest}"
    manifest, _, digest = registry.get_manifest("team/flows", report.tag)
    assert digest == report.digest
    config = json.loads(registry.get_blob("team/flows", manifest["config"]["digest"]))
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Cmd"] == ["pushpool-runner"] and config["config"]["WorkingDir"] == "/app"
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert env["PATH"].startswith("/opt/pushpool/bin:") and env["PYTHON_VERSION"] == "3.11.7"

    base_layer, runtime, dependencies, code = layer_names(report.reference, registry)
    assert "etc/os-release" in base_layer
    assert {"opt/pushpool/bin/pushpool-runner", "opt/pushpool/runtime/pushpool/runner.py"} <= set(runtime)
    assert any(name.startswith("opt/pushpool/runtime/httpx/") for name in runtime)
    assert "opt/pushpool/site-packages/six.py" in dependencies
    assert {"app/flows.py", "app/helpers/util.py", "app/requirements.txt"} <= set(code)
    assert not any(".git" in name for name in code)

    # The image's own Cmd, with only its layers on the path: the runner starts and asks for its run.
    exit_code, output = run_image(report.reference, registry=registry)
    assert exit_code == 2 and "missing environment variable(s) PUSHPOOL_API_URL" in output, output
    exit_code, output = run_image(report.reference, registry=registry,
                                  command=["python3", "-c", "import six, flows; print(flows.etl.name)"])
    assert (exit_code, output.strip()) == (0, "etl")
    # The project's own sdk/ and infra/ are its own; pushpool is pushpool.
    exit_code, output = run_image(report.reference, registry=registry, command=[
        "python3", "-c",
        "import sdk, infra, pushpool.runner, pushpool.control_plane.models; print(sdk.MINE, infra.MINE)"])
    assert (exit_code, output.strip()) == (0, "sdk infra"), output


def test_an_unchanged_project_pushes_nothing_and_a_code_change_only_the_code_layer(registry, base, project):
    first = build(registry, base, project)
    assert {layer.name for layer in first.uploaded} == {"runtime", "dependencies", "code"}
    again = build(registry, base, project)
    assert again.up_to_date and again.digest == first.digest and again.layers == []

    (project / "helpers" / "util.py").write_text("VALUE = 2\n")
    changed = build(registry, base, project)
    assert changed.tag != first.tag and changed.digest != first.digest
    assert [layer.name for layer in changed.uploaded] == ["code"]
    assert {layer.name: layer.outcome for layer in changed.layers}["runtime"] == "exists"


def test_two_clean_builds_give_the_same_digest(registry, base, project, tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_LAYER_CACHE", str(tmp_path / "first-cache"))
    first = build(registry, base, project, name="clean/one")
    monkeypatch.setenv("PUSHPOOL_LAYER_CACHE", str(tmp_path / "second-cache"))  # no cached layers
    second = build(registry, base, project, name="clean/two")
    assert not second.up_to_date and second.digest == first.digest and second.tag == first.tag


def test_a_name_without_registry_goes_under_the_build_namespace(registry, base, project):
    image = DockerImage("etl", base_image=base, backend="daemonless")
    report = image.build(project, namespace=f"{registry.host}/acme", quiet=True)
    assert report.repository == f"{registry.host}/acme/etl"
    assert registry.manifest_digest("acme/etl", report.tag) == report.digest


def test_an_explicit_tag_is_used_and_pushed_again(registry, base, project):
    report = build(registry, base, project, tag="v1", name="tagged/flows")
    assert report.tagged == f"{registry.host}/tagged/flows:v1"
    # a tag like v1 may move: it is always built and pushed
    assert not build(registry, base, project, tag="v1", name="tagged/flows").up_to_date


def test_pushing_to_a_locked_registry_uses_docker_config_and_names_the_fix_without_it(
        oci_registries, base, project, tmp_path, monkeypatch):
    locked = oci_registries["locked"]
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    image = DockerImage(f"{locked}/team/flows", base_image=base, backend="daemonless")
    with pytest.raises(RegistryError, match="needs a username and password"):
        image.build(project, quiet=True)
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {locked: {"auth": auth}}}))
    report = image.build(project, quiet=True)  # the base is copied over from the open registry
    assert {layer.outcome for layer in report.layers} == {"uploaded"}
    assert Registry(locked, (USER, PASSWORD)).manifest_digest("team/flows", report.tag) == report.digest


def test_bad_inputs_are_named(registry, base, project):
    with pytest.raises(ImageBuildError, match="daemonless backend builds linux/amd64 only"):
        build(registry, base, project, platform="linux/arm64")
    with pytest.raises(RegistryError, match="base/none:1"):
        DockerImage(f"{registry.host}/team/flows", base_image=f"{registry.host}/base/none:1",
                    backend="daemonless").build(project, quiet=True)
    (project / "requirements.txt").write_text("pushpool-no-such-package-xyz==1.0\n")
    with pytest.raises(ImageBuildError, match="'pushpool-no-such-package-xyz==1.0'.*backend='docker'"):
        build(registry, base, project)
    (project / "requirements.txt").write_text("-e .\n")
    with pytest.raises(ImageBuildError, match="pip option '-e .'"):
        build(registry, base, project)
    with pytest.raises(ImageBuildError, match="needs the Docker backend"):
        build(registry, base, project, dockerfile="Dockerfile")
    with pytest.raises(ImageBuildError, match="push=False"):
        DockerImage(f"{registry.host}/x", backend="daemonless").build(project, push=False, quiet=True)


def test_requirements_come_from_requirements_txt_else_pyproject(tmp_path):
    assert project_requirements(tmp_path) == ([], "none")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "etl"\ndependencies = ["six>=1.16", "attrs"]\n')
    assert project_requirements(tmp_path) == (["six>=1.16", "attrs"], "pyproject.toml")
    (tmp_path / "requirements.txt").write_text("# pinned\nsix==1.16.0\n\n")
    assert project_requirements(tmp_path) == (["six==1.16.0"], "requirements.txt")
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(ImageBuildError, match="not valid TOML"):
        project_requirements(tmp_path)
