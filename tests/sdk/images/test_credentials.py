"""Registry credentials as docker finds them (config auths, credential helpers) and the clouds' tokens."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from pushpool.images.credentials import (
    ACR_USER,
    CredentialsError,
    credentials_for,
    ensure_repository,
    from_acr,
    from_docker_config,
    from_ecr,
    from_google,
)
from tests.fakes.aws import REGION


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()

    def write(config: dict) -> None:
        (tmp_path / "docker" / "config.json").write_text(json.dumps(config))
    return write


def test_auths_entries_are_read(docker_config):
    assert from_docker_config("ghcr.io") is None  # no config at all
    docker_config({"auths": {"ghcr.io": {"auth": base64.b64encode(b"me:tok:en").decode()},
                             "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}}})
    assert credentials_for("ghcr.io") == ("me", "tok:en")
    assert credentials_for("registry-1.docker.io") == ("hub", "pw")
    assert credentials_for("quay.io") is None


def test_a_credential_helper_gets_the_host_on_stdin_never_in_its_arguments(docker_config, tmp_path, monkeypatch):
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text("#!/bin/sh\nread host\necho \"$@|$host\" > \"$(dirname \"$0\")/asked\"\n"
                      "echo '{\"ServerURL\": \"'$host'\", \"Username\": \"robot\", \"Secret\": \"s3\"}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    docker_config({"credHelpers": {"registry.acme.dev": "fake"}})
    assert credentials_for("registry.acme.dev") == ("robot", "s3")
    assert (helper.parent / "asked").read_text().strip() == "get|registry.acme.dev"
    docker_config({"credsStore": "missing"})
    with pytest.raises(CredentialsError, match="docker-credential-missing is not installed"):
        credentials_for("registry.acme.dev")


def test_ecr_hosts_get_a_token_from_aws(aws):
    user, password = from_ecr(f"123456789012.dkr.ecr.{REGION}.amazonaws.com")
    assert user == "AWS" and password
    assert from_ecr("ghcr.io") is None


def test_artifact_registry_hosts_get_an_access_token(gcp_api):
    from tests.fakes.cloud_run_api import TOKEN

    assert from_google("europe-west1-docker.pkg.dev") == ("oauth2accesstoken", TOKEN)
    assert from_google("ghcr.io") is None


def test_acr_hosts_exchange_an_entra_token_for_a_refresh_token():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread
    from urllib.parse import parse_qs

    from tests.fakes.azure_api import TOKEN, StaticCredential

    asked = []

    class Exchange(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            asked.append((self.path, form))
            ok = form.get("access_token") == TOKEN and form.get("grant_type") == "access_token"
            body = json.dumps({"refresh_token": "acr-refresh"} if ok else {"errors": "denied"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Exchange)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/oauth2/exchange"
    try:
        assert from_acr("pushpoolacme.azurecr.io", StaticCredential(), url) == (ACR_USER, "acr-refresh")
        assert asked == [("/oauth2/exchange", {"grant_type": "access_token", "service": "pushpoolacme.azurecr.io",
                                               "access_token": TOKEN})]

        class Wrong:
            def get_token(self, *scopes):
                from azure.core.credentials import AccessToken
                return AccessToken("someone-else", 4102444800)

        with pytest.raises(CredentialsError, match="refused your Azure token.*AcrPush"):
            from_acr("pushpoolacme.azurecr.io", Wrong(), url)
    finally:
        server.shutdown()
    assert from_acr("ghcr.io") is None


def test_an_ecr_repository_is_created_before_the_first_push_once(aws):
    host = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
    assert ensure_repository(host, "pushpool/etl/flows") is True
    assert ensure_repository(host, "pushpool/etl/flows") is False
    names = [r["repositoryName"] for r in aws.client("ecr").describe_repositories()["repositories"]]
    assert names.count("pushpool/etl/flows") == 1
    assert ensure_repository("ghcr.io", "acme/flows") is False
