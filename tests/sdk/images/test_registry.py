"""Deterministic layers and the registry client against a real OCI registry (Debian's docker-registry on
127.0.0.1): a tiny base image of our own making is pushed first, as there is no internet here."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from pushpool.images.layers import OCI_INDEX, Blob, canonical, image_config, image_manifest, tar_layer
from pushpool.images.registry import Registry, RegistryError, split_reference
from tests.registry_fixtures import PASSWORD, USER


def base_image(registry: Registry, repository: str = "base/tiny", tag: str = "1") -> tuple[dict, str]:
    """A one-layer linux/amd64 'rootfs' and its config, pushed as ``repository:tag``."""
    layer = tar_layer({"etc/os-release": b"ID=tiny\n", "bin/hello": b"#!/bin/sh\necho hi\n"},
                      executables=frozenset({"bin/hello"}))
    config = image_config(None, [layer], env={"PATH": "/bin"}, cmd=["/bin/hello"])
    for blob in (layer, config):
        registry.push_blob(repository, blob)
    manifest = image_manifest(config, [layer.descriptor()])
    return json.loads(manifest.data), registry.push_manifest(repository, tag, manifest)


def test_identical_inputs_give_identical_layers_whatever_the_order():
    one = tar_layer({"app/b.py": b"b", "app/a.py": b"a"})
    two = tar_layer({"app/a.py": b"a", "app/b.py": b"b"})
    assert one.digest == two.digest and one.diff_id == two.diff_id
    assert tar_layer({"app/a.py": b"A", "app/b.py": b"b"}).digest != one.digest
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(one.data))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["app", "app/a.py", "app/b.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_references_split_like_docker():
    assert split_reference("127.0.0.1:5000/team/flows:v3") == ("127.0.0.1:5000", "team/flows", "v3")
    assert split_reference("python:3.11-slim") == ("registry-1.docker.io", "library/python", "3.11-slim")
    assert split_reference("ghcr.io/acme/etl@sha256:ab") == ("ghcr.io", "acme/etl", "sha256:ab")


def test_push_builds_on_a_base_image_and_sends_only_missing_blobs(oci_registries):
    registry = Registry(oci_registries["open"])
    base, base_digest = base_image(registry)
    found, digest = registry.platform_manifest("base/tiny", "1")
    assert digest == base_digest and found == base
    base_config = json.loads(registry.get_blob("base/tiny", base["config"]["digest"]))

    code = tar_layer({"app/flows.py": b"print('hello')\n"})
    config = image_config(base_config, [code], env={"PUSHPOOL": "1"}, cmd=["pushpool-runner"], working_dir="/app")
    assert json.loads(config.data)["rootfs"]["diff_ids"][-1] == code.diff_id
    outcomes = [registry.push_blob("team/flows", blob, mount_from="base/tiny") for blob in
                [Blob(registry.get_blob("base/tiny", base["layers"][0]["digest"]), base["layers"][0]["mediaType"]),
                 code, config]]
    assert outcomes == ["mounted", "uploaded", "uploaded"]
    manifest = image_manifest(config, [*base["layers"], code.descriptor()])
    assert registry.push_manifest("team/flows", "v1", manifest) == manifest.digest
    again = [registry.push_blob("team/flows", blob) for blob in (code, config)]
    assert again == ["exists", "exists"]  # an unchanged project uploads nothing
    assert registry.get_manifest("team/flows", manifest.digest)[2] == manifest.digest


def test_an_index_is_resolved_to_its_amd64_image_or_the_error_names_the_platforms(oci_registries):
    registry = Registry(oci_registries["open"])
    amd64, digest = base_image(registry, "multi/img", "amd64")
    index = Blob(canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": amd64["mediaType"], "digest": digest, "size": len(canonical(amd64)),
         "platform": {"os": "linux", "architecture": "amd64"}}]}), OCI_INDEX)
    registry.push_manifest("multi/img", "latest", index)
    assert registry.platform_manifest("multi/img", "latest")[1] == digest
    with pytest.raises(RegistryError, match="no linux/arm64 image.*linux/amd64"):
        registry.platform_manifest("multi/img", "latest", "linux/arm64")


def test_a_registry_with_basic_auth_needs_and_takes_the_credentials(oci_registries):
    with pytest.raises(RegistryError, match="needs a username and password"):
        Registry(oci_registries["locked"]).has_blob("team/flows", "sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="refused the credentials"):
        Registry(oci_registries["locked"], credentials=(USER, "wrong")).has_blob("team/flows", "sha256:" + "0" * 64)
    registry = Registry(oci_registries["locked"], credentials=(USER, PASSWORD))
    base_image(registry, "private/base", "1")
    assert registry.platform_manifest("private/base", "1")[1]


def test_a_bearer_challenge_is_answered_with_a_token_for_the_scope():
    """The token flow of Docker Hub, GHCR and the clouds' registries, against a small fake of it."""
    from tests.fakes.json_api import ApiError, JsonApi, Reply

    class TokenRegistry(JsonApi):
        ROUTES = [("GET", r"/(token)", "token"), ("HEAD", r"/v2/(.+)/blobs/.+", "blob")]
        scopes: list[str] = []

        def authenticate(self, path, headers):
            if path == "/token":
                if headers.get("Authorization") != "Basic cHVzaGVyOnMzY3JldC1wdw==":  # pusher:s3cret-pw
                    raise ApiError(401, "bad credentials")
                return None
            if headers.get("Authorization") != "Bearer tok-123":
                raise ApiError(401, "token required", headers={"WWW-Authenticate": (
                    f'Bearer realm="{self.url}/token",service="fake-registry",scope="repository:x:pull"')})
            return None

        def token(self, _, query, __):
            self.scopes.append(query["scope"][0])
            return {"token": "tok-123"}

        def blob(self, *_):
            return Reply({}, 200)

    fake = TokenRegistry().start()
    try:
        registry = Registry(fake.url.removeprefix("http://"), credentials=(USER, PASSWORD))
        assert registry.has_blob("team/flows", "sha256:" + "0" * 64)
        assert registry.has_blob("team/flows", "sha256:" + "1" * 64)
        assert fake.scopes == ["repository:team/flows:pull"]  # one token, kept for its scope
        with pytest.raises(RegistryError, match="token service refused"):
            Registry(fake.url.removeprefix("http://"), credentials=(USER, "nope")).has_blob("a/b", "sha256:" + "0" * 64)
    finally:
        fake.stop()
