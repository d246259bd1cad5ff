"""API keys and run tokens: minting, hashing and role permissions.

Keys are 256-bit random secrets behind a readable prefix (``ppu_`` user,
``ppb_`` service account, ``ppr_`` run token). Only their SHA-256 digest is stored;
with that much entropy a slow hash adds nothing. Run tokens embed the run id so
they can be checked against the hash kept on the run without another index.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from enum import StrEnum

from pushpool.control_plane.models import ActorKind, Role

USER_PREFIX = "ppu_"
SERVICE_ACCOUNT_PREFIX = "ppb_"
RUN_TOKEN_PREFIX = "ppr_"


class Permission(StrEnum):
    READ = "read"              # list and read pools, queues, blocks (masked), deployments, runs
    RUN = "run"                # create and cancel flow runs
    WRITE = "write"            # create/update/delete pools, queues, blocks, deployments; set run states
    ADMIN = "admin"            # manage service accounts and members


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.DEVELOPER: frozenset({Permission.READ, Permission.RUN, Permission.WRITE}),
    Role.RUNNER: frozenset({Permission.READ, Permission.RUN}),
    Role.VIEWER: frozenset({Permission.READ}),
}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), expected_hash)


def mint_api_key(kind: ActorKind) -> str:
    prefix = USER_PREFIX if kind is ActorKind.USER else SERVICE_ACCOUNT_PREFIX
    return prefix + secrets.token_urlsafe(32)


def mint_run_token(run_id: str, secret: bytes) -> str:
    """The run's token: an HMAC of its id under the control plane's secret.

    Deterministic on purpose: if a dispatcher dies after the pusher started the
    container but before the infra id was recorded, the resubmission finds that
    container (pusher idempotency) and must not invalidate the token it holds.
    """
    mac = hmac.new(secret, f"run-token:{run_id}".encode(), hashlib.sha256).digest()
    return f"{RUN_TOKEN_PREFIX}{run_id.replace('-', '')}_{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def run_id_of_token(token: str) -> str | None:
    """The run id a run token names, or None when the token is malformed."""
    body = token[len(RUN_TOKEN_PREFIX):]
    hex_id, sep, secret = body.partition("_")
    if not sep or len(hex_id) != 32 or not secret:
        return None
    try:
        int(hex_id, 16)
    except ValueError:
        return None
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def display_prefix(key: str) -> str:
    return key[:10]
