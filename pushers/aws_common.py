"""AWS plumbing shared by the ECS pusher and the AWS provisioner: sessions and error translation.

boto3/botocore are imported inside functions only, so importing this module is free.
Errors are classified by their AWS error code, never by message text.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from pushpool.pushers.base import PermanentPusherError, ThrottledPusherError, TransientPusherError

TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError", "ServerException",
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "LimitExceededException",
})
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
                              "RequestThrottled", "SlowDown"})
ACCESS_CODES = frozenset({
    "AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredTokenException", "AuthFailure",
})

_sessions: dict[tuple, tuple[Any, float]] = {}
_sessions_lock = threading.Lock()


def client_config() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=10, read_timeout=60)


def session_for(credentials: dict[str, Any] | None, region: str | None) -> Any:
    """A boto3 session for an ``aws-credentials`` block's data (or the default chain when empty).

    With ``role_arn`` the role is assumed (with ``external_id``), so no long-lived key is
    needed; assumed sessions are cached until five minutes before they expire.
    """
    import boto3

    creds = dict(credentials or {})
    region = region or creds.get("region_name")
    key = (tuple(sorted((k, str(v)) for k, v in creds.items())), region)
    with _sessions_lock:
        cached = _sessions.get(key)
        if cached and cached[1] > time.time():
            return cached[0]
    base_kwargs: dict[str, Any] = {"region_name": region}
    if creds.get("profile_name"):
        base_kwargs["profile_name"] = creds["profile_name"]
    if creds.get("aws_access_key_id"):
        base_kwargs.update(aws_access_key_id=creds["aws_access_key_id"],
                           aws_secret_access_key=creds.get("aws_secret_access_key"),
                           aws_session_token=creds.get("aws_session_token"))
    session = boto3.Session(**base_kwargs)
    expires = time.time() + 3600
    if creds.get("role_arn"):
        params: dict[str, Any] = {"RoleArn": creds["role_arn"], "RoleSessionName": "pushpool"}
        if creds.get("external_id"):
            params["ExternalId"] = creds["external_id"]
        try:
            assumed = session.client("sts", config=client_config()).assume_role(**params)["Credentials"]
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, "sts:AssumeRole") from exc
        session = boto3.Session(region_name=region, aws_access_key_id=assumed["AccessKeyId"],
                                aws_secret_access_key=assumed["SecretAccessKey"],
                                aws_session_token=assumed["SessionToken"])
        expires = assumed["Expiration"].timestamp() - 300
    with _sessions_lock:
        _sessions[key] = (session, expires)
    return session


_clients: dict[tuple, tuple[Any, Any]] = {}
_clients_lock = threading.Lock()


def aws_client(service: str, credentials: dict[str, Any] | None, region: str | None) -> Any:
    """One boto3 client per service, region and session, kept: clients are thread-safe and cheap to share, but
    making one from a shared session is not thread-safe (boto3 issue 1592) and costs tens of milliseconds, and a
    client's adaptive-retry rate limiter only learns when the same client makes the calls. A session replaced
    (assumed-role credentials renewed) gets new clients."""
    session = session_for(credentials, region)
    key = (id(session), service, region, os.environ.get("AWS_ENDPOINT_URL"))  # (an endpoint set for tests/local)
    with _clients_lock:
        found = _clients.get(key)
        if found is None or found[0] is not session:
            for stale in [k for k, (s, _) in _clients.items() if k[0] != id(session) and _expired(s)]:
                del _clients[stale]
            found = (session, session.client(service, config=client_config()))
            _clients[key] = found
        return found[1]


def _expired(session: Any) -> bool:
    with _sessions_lock:
        return all(cached is not session for cached, _ in _sessions.values())


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def translate(exc: BaseException, action: str, hint: str = "") -> Exception:
    """A pusher error for an AWS failure: transient ones are retried, permanent ones say what to fix."""
    from botocore.exceptions import BotoCoreError, ConnectionError, NoCredentialsError, NoRegionError

    code = error_code(exc)
    message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc)) if code else str(exc)
    if isinstance(exc, NoCredentialsError):
        return PermanentPusherError(f"{action}: no AWS credentials; set the pool's 'aws_credentials' block "
                                    "(pushpool work-pool provision-infra creates one)")
    if isinstance(exc, NoRegionError):
        return PermanentPusherError(f"{action}: no AWS region; set the 'region' job variable")
    if code in THROTTLING_CODES:
        return ThrottledPusherError(f"{action}: {code}: {message}")
    if isinstance(exc, ConnectionError) or code in TRANSIENT_CODES:
        return TransientPusherError(f"{action}: {code or type(exc).__name__}: {message}")
    if code in ACCESS_CODES:
        return PermanentPusherError(f"{action} was denied ({code}): {message}. Grant the pool's AWS identity "
                                    f"that permission (docs/aws-ecs.md lists what it needs)")
    if isinstance(exc, BotoCoreError):
        return TransientPusherError(f"{action}: {exc}")
    detail = f"{action} failed ({code}): {message}"
    return PermanentPusherError(f"{detail}. {hint}" if hint else detail)
