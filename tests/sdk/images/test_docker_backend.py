"""The Docker backend with a real engine (Debian's dockerd, started by the test set-up) and a real
registry: the generated Dockerfile and a user's own, built for linux/amd64 through the engine's API,
pushed, pulled back and run. Builds use ``network_mode="none"`` (no network here)."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from pushpool.images import DockerImage, ImageBuildError
from pushpool.images.docker_backend import build_context, generated_dockerfile
from tests.fakes.images import layer_names, push_base_image, run_image


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "flows.py").write_text("from pushpool import flow\n\n\n@flow\ndef etl():\n    return 1\n")
    (root / ".venv").mkdir()
    (root / ".venv" / "junk").write_text("x")
    return root


def test_the_generated_dockerfile_builds_an_amd64_image_that_runs_the_runner(docker_host, registry, project):
    base = push_base_image(registry, "docker-base/python")
    image = DockerImage(f"{registry.host}/docker/flows", base_image=base, backend="docker", network_mode="none")
    report = image.build(project, quiet=True)
    assert report.backend == "docker" and report.reference == f"{registry.host}/docker/flows@{report.digest}"
    manifest, _, digest = registry.get_manifest("docker/flows", report.tag)
    assert digest == report.digest
    config = json.loads(registry.get_blob("docker/flows", manifest["config"]["digest"]))
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Cmd"] == ["pushpool-runner"] and config["config"]["WorkingDir"] == "/app"
    names = {name for layer in layer_names(report.reference, registry) for name in layer}
    assert {"app/flows.py", "opt/pushpool/runtime/pushpool/runner.py", "opt/pushpool/bin/pushpool-runner"} <= names
    assert not any(".venv" in name for name in names)
    exit_code, output = run_image(report.reference, registry=registry)
    assert exit_code == 2 and "missing environment variable(s)" in output, output

    again = image.build(project, quiet=True)
    assert again.up_to_date and again.digest == report.digest


def test_a_users_own_dockerfile(docker_host, registry, project):
    base = push_base_image(registry, "docker-base/own")
    (project / "Dockerfile").write_text(f'FROM {base}\nCOPY flows.py /srv/flows.py\nCMD ["python3", "/srv/flows.py"]\n')
    report = DockerImage(f"{registry.host}/docker/own", tag="v1", dockerfile="Dockerfile", network_mode="none",
                         ).build(project, quiet=True)  # auto: the engine answers, so the Docker backend
    assert report.backend == "docker" and report.tag == "v1"
    manifest, _, _ = registry.get_manifest("docker/own", "v1")
    config = json.loads(registry.get_blob("docker/own", manifest["config"]["digest"]))
    assert config["config"]["Cmd"] == ["python3", "/srv/flows.py"]
    assert "srv/flows.py" in layer_names(report.reference, registry)[-1]


def test_a_failing_build_says_what_failed(docker_host, registry, project):
    (project / "Dockerfile").write_text(f"FROM {registry.host}/docker-base/missing:1\n")
    with pytest.raises(ImageBuildError, match="docker build failed: .*docker-base/missing"):
        DockerImage(f"{registry.host}/docker/broken", dockerfile="Dockerfile", backend="docker",
                    network_mode="none").build(project, quiet=True)


def test_the_generated_dockerfile_installs_requirements_with_pip_in_the_image(tmp_path):
    dockerfile = generated_dockerfile("python:3.11-slim", has_requirements=True)
    assert dockerfile.splitlines()[0] == "FROM python:3.11-slim"
    assert "RUN python -m pip install --no-cache-dir --disable-pip-version-check -r /opt/pushpool/requirements.txt" \
        in dockerfile
    assert "RUN" not in generated_dockerfile("python:3.11-slim", has_requirements=False)
    (tmp_path / "flows.py").write_text("x = 1\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.1.0\n")
    context, name = build_context(tmp_path, "python:3.11-slim", "auto", "3.11")
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        files = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert tar.extractfile(files[".pushpool/requirements.txt"]).read() == b"numpy==2.1.0\n"
        assert files[".pushpool/opt/pushpool/bin/pushpool-runner"].mode == 0o755
    assert name == "Dockerfile.pushpool" and "app/flows.py" in files


def test_with_buildx_the_context_goes_to_buildx_build_with_platform_and_push(registry, project, tmp_path,
                                                                            monkeypatch):
    """buildx is not on this machine: a stand-in ``docker`` records what pushpool asks of it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(f'''#!{os.environ.get("PYTHON", "/usr/bin/env python3")}
import json, sys
args = sys.argv[1:]
if args[:2] == ["buildx", "version"]:
    sys.exit(0)
open({str(tmp_path / "argv.json")!r}, "w").write(json.dumps(args))
open({str(tmp_path / "context.tar")!r}, "wb").write(sys.stdin.buffer.read())
metadata = args[args.index("--metadata-file") + 1]
open(metadata, "w").write(json.dumps({{"containerimage.digest": "sha256:" + "ab" * 32}}))
''')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    report = DockerImage(f"{registry.host}/buildx/flows", backend="docker").build(project, quiet=True)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:6] == ["buildx", "build", "--platform", "linux/amd64", "--push", "--provenance=false"]
    assert argv[-1] == "-" and f"{registry.host}/buildx/flows:{report.tag}" in argv
    assert report.digest == "sha256:" + "ab" * 32
    with tarfile.open(fileobj=io.BytesIO((tmp_path / "context.tar").read_bytes())) as tar:
        assert "Dockerfile.pushpool" in tar.getnames()
