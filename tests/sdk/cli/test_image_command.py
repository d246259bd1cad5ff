"""``pushpool image build`` builds and pushes a project's image, printing the reference to deploy with."""

from __future__ import annotations

import json

from pushpool.images.registry import Registry
from tests.fakes.images import push_base_image


def test_image_build_prints_the_digest_reference_and_skips_an_unchanged_project(server, tmp_path, oci_registries):
    cli = server
    registry = Registry(oci_registries["open"])
    base = push_base_image(registry, "cli-base/python")
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text("from pushpool import flow\n\n\n@flow\ndef etl():\n    return 1\n")
    args = ["image", "build", f"{registry.host}/cli/flows", "--path", str(project), "--base-image", base,
            "--backend", "daemonless"]
    reference = cli.ok(*args).strip().splitlines()[-1]
    repository, digest = reference.split("@")
    assert repository == f"{registry.host}/cli/flows" and registry.get_manifest("cli/flows", digest)[2] == digest
    again = json.loads(cli.ok(*args, "--output", "json"))
    assert again["up_to_date"] is True and again["reference"] == reference
    assert "image.backend: 'podman'" in cli.fails("image", "build", "x", "--backend", "podman")
    assert "daemonless backend builds linux/amd64 only" in cli.fails(*args, "--platform", "linux/arm64")
