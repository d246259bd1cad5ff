"""Registry credentials, found the way ``docker`` finds them, plus the clouds' own token exchanges.

Order for a registry host:

1. ``~/.docker/config.json`` (or ``$DOCKER_CONFIG/config.json``): a ``credHelpers`` entry for the
   host, else the ``credsStore``, is asked through ``docker-credential-<helper> get`` with the host
   on stdin (never on a command line); else an ``auths`` entry (``auth`` = base64 ``user:password``).
2. Amazon ECR (``<account>.dkr.ecr.<region>.amazonaws.com``): ``GetAuthorizationToken`` with your
   AWS login (boto3, imported only then).
3. Google Artifact Registry / Container Registry (``*-docker.pkg.dev``, ``*gcr.io``): an access token
   of your application default credentials, as user ``oauth2accesstoken``.
4. Azure Container Registry (``*.azurecr.io``): a Microsoft Entra token of your Azure login
   (``DefaultAzureCredential``: az login, environment, managed identity) exchanged at the
   registry's ``/oauth2/exchange`` for a refresh token, used as the password of the all-zero user.
5. Nothing: anonymous (public images).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from pushpool.control_plane.errors import PushpoolError

ACR_HOST = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.(?:io|cn|us)$")
ACR_USER = "00000000-0000-0000-0000-000000000000"
ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
GOOGLE_HOST = re.compile(r"^([a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$")
DOCKER_HUB = ("registry-1.docker.io", "index.docker.io", "docker.io")


class CredentialsError(PushpoolError):
    """Registry credentials were found but could not be read; the message says where."""


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def from_docker_config(host: str, path: Path | None = None) -> tuple[str, str] | None:
    path = path or docker_config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"{path}: not readable as Docker's config ({exc})") from None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host in DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "docker.io", "index.docker.io"]
    helper = next((config.get("credHelpers", {}).get(k) for k in keys if config.get("credHelpers", {}).get(k)),
                  None) or config.get("credsStore")
    if helper:
        found = _from_helper(helper, keys[0] if host not in DOCKER_HUB else "https://index.docker.io/v1/")
        if found:
            return found
    for key in keys:
        entry = config.get("auths", {}).get(key)
        if not entry:
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise CredentialsError(f"{path}: the auth of {key} is not base64 user:password") from None
            return user, password
        if entry.get("username") and entry.get("password"):
            return entry["username"], entry["password"]
    return None


def _from_helper(helper: str, server: str) -> tuple[str, str] | None:
    program = f"docker-credential-{helper}"
    try:
        answer = subprocess.run([program, "get"], input=server, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise CredentialsError(f"Docker's config names the credential helper {helper!r}, but {program} is not "
                               "installed") from None
    if answer.returncode != 0:
        return None  # the helper knows nothing of this server
    try:
        found = json.loads(answer.stdout)
    except ValueError:
        raise CredentialsError(f"{program} answered something that is not JSON") from None
    return (found.get("Username") or "", found.get("Secret") or "") if found.get("Secret") else None


def from_ecr(host: str) -> tuple[str, str] | None:
    match = ECR_HOST.match(host)
    if not match:
        return None
    import boto3

    account, region = match.groups()
    try:
        answer = boto3.client("ecr", region_name=region).get_authorization_token(registryIds=[account])
    except Exception as exc:  # noqa: BLE001 - botocore's errors, a missing login
        raise CredentialsError(f"{host}: no ECR token ({exc}); log in to AWS (aws sso login, a profile)") from None
    user, _, password = base64.b64decode(answer["authorizationData"][0]["authorizationToken"]).decode().partition(":")
    return user, password


def ensure_repository(host: str, repository: str) -> bool:
    """Create ``repository`` when the registry needs repositories made before a push (Amazon ECR; the
    others create them on the first push). True when it was created."""
    match = ECR_HOST.match(host)
    if not match:
        return False
    import boto3

    account, region = match.groups()
    ecr = boto3.client("ecr", region_name=region)
    try:
        ecr.describe_repositories(registryId=account, repositoryNames=[repository])
        return False
    except ecr.exceptions.RepositoryNotFoundException:
        pass
    except Exception as exc:  # noqa: BLE001 - botocore's errors, a missing login
        raise CredentialsError(f"{host}: cannot look up ECR repository {repository!r} ({exc})") from None
    try:
        ecr.create_repository(registryId=account, repositoryName=repository,
                              imageScanningConfiguration={"scanOnPush": True},
                              tags=[{"Key": "pushpool:created-by", "Value": "image-build"}])
    except ecr.exceptions.RepositoryAlreadyExistsException:
        return False  # made by a concurrent build
    except Exception as exc:  # noqa: BLE001
        raise CredentialsError(f"{host}: cannot create ECR repository {repository!r} ({exc}); create it with "
                               f"`aws ecr create-repository --repository-name {repository}`") from None
    return True


def from_google(host: str) -> tuple[str, str] | None:
    if not GOOGLE_HOST.match(host):
        return None
    import google.auth
    import google.auth.transport.requests

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(google.auth.transport.requests.Request())
    except Exception as exc:  # noqa: BLE001 - google.auth's errors
        raise CredentialsError(f"{host}: no Google access token ({exc}); run `gcloud auth application-default "
                               "login`") from None
    return "oauth2accesstoken", credentials.token


def from_acr(host: str, credential: Any = None, exchange_url: str | None = None) -> tuple[str, str] | None:
    if not ACR_HOST.match(host) and exchange_url is None:
        return None
    import httpx

    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    try:
        token = credential.get_token("https://management.azure.com/.default").token
    except Exception as exc:  # noqa: BLE001 - azure.identity's errors
        raise CredentialsError(f"{host}: no Microsoft Entra token ({exc}); run `az login`") from None
    try:
        answer = httpx.post(exchange_url or f"https://{host}/oauth2/exchange", timeout=30,
                            data={"grant_type": "access_token", "service": host, "access_token": token})
    except httpx.HTTPError as exc:
        raise CredentialsError(f"{host}: the token exchange failed ({exc})") from None
    if answer.status_code != 200 or "refresh_token" not in answer.text:
        raise CredentialsError(f"{host}: the registry refused your Azure token ({answer.status_code}); you need "
                               "the AcrPush role on it")
    return ACR_USER, answer.json()["refresh_token"]


def credentials_for(host: str) -> tuple[str, str] | None:
    """The username and password (or token) to push to ``host``, or None for anonymous."""
    return from_docker_config(host) or from_ecr(host) or from_google(host) or from_acr(host)
