"""infra/kubernetes.yaml and the self-hosting guides agree with the code: the manifest runs the server image as
its unprivileged user, on its port, with /tmp writable under a read-only root, probes on the health route, every
secret it names declared; every PUSHPOOL_* variable the docs name is one the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pushpool.control_plane.settings import Settings
from pushpool.images.server_image import PORT, SERVER_ENV, SERVER_USER
from pushpool.settings import ClientSettings

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("sdk", "control_plane", "pushers", "provisioners")


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict]:
    documents = list(yaml.safe_load_all((REPO / "infra" / "kubernetes.yaml").read_text()))
    return {document["kind"]: document for document in documents}


def read_variables() -> set[str]:
    """PUSHPOOL_* names the code reads: the settings' fields, and names spelled out in the source."""
    names = {f"PUSHPOOL_{field.upper()}" for model in (Settings, ClientSettings) for field in model.model_fields}
    for folder in SOURCES:
        for path in (REPO / folder).rglob("*.py"):
            names |= set(re.findall(r"PUSHPOOL_[A-Z_]+[A-Z]", path.read_text()))
    return names


def test_the_deployment_runs_the_image_as_built(manifest):
    pod = manifest["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert str(pod["securityContext"]["runAsUser"]) == SERVER_USER and pod["securityContext"]["runAsNonRoot"]
    assert [port["containerPort"] for port in container["ports"]] == [int(PORT)]
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/api/health", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"]
    home = SERVER_ENV["PUSHPOOL_HOME"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert any(home.startswith(path) for path in mounts), "the server writes its home: mount something there"
    assert {volume["name"] for volume in pod["volumes"]} >= set(mounts.values())


def test_every_variable_is_a_setting_and_every_secret_is_declared(manifest):
    (container,) = manifest["Deployment"]["spec"]["template"]["spec"]["containers"]
    fields = {f"PUSHPOOL_{name.upper()}" for name in Settings.model_fields}
    names = {item["name"] for item in container["env"]}
    assert names <= fields, names - fields
    assert {"PUSHPOOL_STORE", "PUSHPOOL_DATABASE_URL", "PUSHPOOL_ENCRYPTION_KEY", "PUSHPOOL_PUBLIC_API_URL"} <= names
    secret = manifest["Secret"]
    for item in container["env"]:
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]
    settings = {item["name"][len("PUSHPOOL_"):].lower(): item["value"] for item in container["env"] if "value" in item}
    Settings(**settings)  # the literal values validate


def test_the_service_and_ingress_reach_the_pods(manifest):
    labels = manifest["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = manifest["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = manifest["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": service["spec"]["ports"][0]["name"]}}


def test_every_variable_the_docs_name_is_read_by_the_code():
    known = read_variables()
    unknown = {}
    for path in [*(REPO / "docs").glob("*.md"), REPO / "README.md"]:
        for name in set(re.findall(r"PUSHPOOL_[A-Z_]+[A-Z]", path.read_text())) - known:
            unknown.setdefault(path.name, []).append(name)
    assert unknown == {}
