"""The control plane's own image (`pushpool server image`), built by the daemonless builder into a real registry
and run from what the registry holds: its layers unpacked, its Entrypoint, Cmd and Env obeyed (this machine's
CPython standing in for the base image's, started without site-packages, so every import comes from the image).
The server in it serves the API on $PORT against a real PostgreSQL; `pushpool server bootstrap` from the same
image makes the first owner key. A run of it under a real Docker engine is in test_server_image_docker.py."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cryptography.fernet import Fernet

from pushpool.images import ImageBuildError
from pushpool.images.server_image import available_extras, build_server_image, server_requirements
from tests.fakes.images import layer_names, push_base_image, run_image, started_image
from tests.fakes.net import free_port

pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def server_image(oci_registries, tmp_path_factory):
    """(registry client, reference) of one server image for the module (the dependency layer is the slow part)."""
    from pushpool.images.registry import Registry

    registry = Registry(oci_registries["open"])
    base = push_base_image(registry, "server-base/python")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUSHPOOL_LAYER_CACHE", str(tmp_path_factory.mktemp("server-layers")))
        report = build_server_image(f"{registry.host}/pushpool/control-plane", base_image=base, quiet=True)
    yield registry, report
    registry.close()


def _container_env(tmp_path, key: str, **extra: str) -> dict[str, str]:
    return {"PUSHPOOL_HOME": str(tmp_path / "home"), "PUSHPOOL_ENCRYPTION_KEY": key, **extra}


def test_the_image_runs_the_server_unprivileged_on_port_8080_without_a_first_key(server_image):
    registry, report = server_image
    manifest, _, digest = registry.get_manifest("pushpool/control-plane", report.tag)
    assert digest == report.digest
    config = json.loads(registry.get_blob("pushpool/control-plane", manifest["config"]["digest"]))
    runtime = config["config"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert runtime["Entrypoint"] == ["pushpool"] and runtime["Cmd"] == ["server", "start"]
    assert runtime["User"] == "65532" and runtime["ExposedPorts"] == {"8080/tcp": {}}
    env = dict(item.split("=", 1) for item in runtime["Env"])
    assert env["PORT"] == "8080" and env["PUSHPOOL_HOST"] == "0.0.0.0" and env["PUSHPOOL_BOOTSTRAP"] == "false"
    assert env["LANG"] == "C.UTF-8"  # the base image's environment is kept

    base_layer, dependencies, code = layer_names(report.reference, registry)
    assert "etc/os-release" in base_layer
    assert "opt/pushpool/server/pushpool/control_plane/storage/postgres.py" in code
    assert "opt/pushpool/server/pushpool/pushers/ecs.py" in code and "opt/pushpool/bin/pushpool" in code
    assert not any("/tests/" in name or name.endswith(".pyc") for name in code)
    tops = {name.split("/")[3] for name in dependencies if name.count("/") >= 3}
    assert {"fastapi", "uvicorn", "psycopg", "psycopg_binary", "psycopg_pool", "cryptography"} <= tops
    assert not tops & {"boto3", "google", "azure", "modal", "coiled", "pytest", "moto"}  # no extra asked for


def test_an_unchanged_release_pushes_nothing(server_image, monkeypatch, tmp_path):
    registry, report = server_image
    again = build_server_image(f"{registry.host}/pushpool/control-plane", base_image=_base_of(registry), quiet=True)
    assert again.up_to_date and again.digest == report.digest


def _base_of(registry) -> str:
    return f"{registry.host}/server-base/python:3.11"


@pytest.mark.timeout(300)
def test_the_image_serves_a_postgresql_store_and_bootstrap_makes_the_first_key(server_image, postgres_url,
                                                                                tmp_path):
    registry, report = server_image
    key = Fernet.generate_key().decode()
    port = free_port()
    env = _container_env(tmp_path, key, PORT=str(port), PUSHPOOL_HOST="127.0.0.1", PUSHPOOL_STORE="postgresql",
                         PUSHPOOL_DATABASE_URL=postgres_url)
    (tmp_path / "server").mkdir()
    with started_image(report.reference, tmp_path / "server", env=env, registry=registry) as server:
        api = f"http://127.0.0.1:{port}"
        _wait_healthy(api, server, tmp_path / "server" / "output.log")
        log = (tmp_path / "server" / "output.log").read_text()
        assert "pushpool server bootstrap" in log  # the empty store is said, and no key was made
        assert not (tmp_path / "home" / "profiles.toml").exists()

        (tmp_path / "job").mkdir()
        code, output = run_image(report.reference, env=env, command=["server", "bootstrap", "-o", "json"],
                                 registry=registry, timeout=120)
        assert code == 0, output
        issued = json.loads(output[output.index("{"):])
        assert issued["created"] is True and issued["workspace"] == "default"
        headers = {"Authorization": f"Bearer {issued['key']}"}
        made = httpx.post(f"{api}/api/workspaces/default/work_pools", headers=headers,
                          json={"name": "cloud", "type": "local:push"}, timeout=30)
        assert made.status_code == 201, made.text

        code, output = run_image(report.reference, env=env, command=["server", "bootstrap", "-o", "json"],
                                 registry=registry, timeout=120)
        assert code == 0 and json.loads(output[output.index("{"):]) == {"created": False}, output
    assert "Traceback" not in (tmp_path / "server" / "output.log").read_text()


def test_a_replica_with_another_encryption_key_refuses_bootstrap(server_image, postgres_url, tmp_path):
    registry, report = server_image
    env = _container_env(tmp_path, Fernet.generate_key().decode(), PUSHPOOL_STORE="postgresql",
                         PUSHPOOL_DATABASE_URL=postgres_url)
    code, output = run_image(report.reference, env=env, command=["server", "bootstrap"], registry=registry,
                             timeout=120)
    assert code == 0, output
    other = {**env, "PUSHPOOL_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    code, output = run_image(report.reference, env=other, command=["server", "bootstrap"], registry=registry,
                             timeout=120)
    assert code != 0 and "same PUSHPOOL_ENCRYPTION_KEY" in output and "Traceback" not in output


def test_extras_add_a_clouds_sdk_and_an_unknown_one_is_refused():
    assert {"aws", "gcp", "azure", "modal", "coiled"} <= set(available_extras())
    assert "dev" not in available_extras() and "lambda" not in available_extras()
    plain = server_requirements()
    assert any(r.startswith("psycopg[binary]") for r in plain) and not any(r.startswith("boto3") for r in plain)
    assert any(r.startswith("google-cloud-run") for r in server_requirements(("gcp",)))
    with pytest.raises(ImageBuildError, match="--extra: 'kubernetes' is not one of aws, azure, coiled, gcp, modal"):
        server_requirements(("kubernetes",))


def _wait_healthy(api: str, process, log_path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{api}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer: {log_path.read_text()[-2000:]}")
