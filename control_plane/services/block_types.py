"""Known block types: their fields, which are required and which are secret.

Secret fields are masked in every API response; the clear values only reach the
dispatcher, which hands them to a pusher through the rendered job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pushpool.control_plane.errors import InvalidInput

MASK = "********"


@dataclass(frozen=True)
class BlockField:
    name: str
    required: bool = False
    secret: bool = False


BLOCK_TYPES: dict[str, tuple[BlockField, ...]] = {
    "secret": (BlockField("value", required=True, secret=True),),
    "json": (BlockField("value", required=True),),
    "aws-credentials": (
        BlockField("aws_access_key_id"),
        BlockField("aws_secret_access_key", secret=True),
        BlockField("aws_session_token", secret=True),
        BlockField("region_name"),
        BlockField("role_arn"),
        BlockField("external_id", secret=True),
        BlockField("profile_name"),
    ),
    "gcp-credentials": (
        BlockField("service_account_info", secret=True),
        BlockField("project"),
    ),
    "azure-credentials": (
        BlockField("tenant_id"),
        BlockField("client_id"),
        BlockField("client_secret", secret=True),
        BlockField("subscription_id"),
    ),
    "modal-credentials": (
        BlockField("token_id", required=True),
        BlockField("token_secret", required=True, secret=True),
    ),
    "coiled-credentials": (
        BlockField("token", required=True, secret=True),
        BlockField("workspace"),
    ),
    # where automations send notifications: a Slack-compatible incoming webhook, or any JSON webhook
    "slack-webhook": (BlockField("url", required=True, secret=True),),
    "webhook": (BlockField("url", required=True, secret=True),),
    "docker-registry-credentials": (
        BlockField("registry_url", required=True),
        BlockField("username", required=True),
        BlockField("password", required=True, secret=True),
    ),
}


def validate_block_data(block_type: str, data: dict[str, Any]) -> None:
    fields = BLOCK_TYPES.get(block_type)
    if fields is None:
        raise InvalidInput(f"type: unknown block type {block_type!r}; known types: {', '.join(sorted(BLOCK_TYPES))}")
    known = {f.name for f in fields}
    for name in data:
        if name not in known:
            fields_list = ", ".join(sorted(known))
            raise InvalidInput(f"data.{name}: not a field of {block_type!r} blocks (fields: {fields_list})")
    for f in fields:
        if f.required and data.get(f.name) in (None, ""):
            raise InvalidInput(f"data.{f.name}: required for {block_type!r} blocks")


def mask_block_data(block_type: str, data: dict[str, Any]) -> dict[str, Any]:
    secret = {f.name for f in BLOCK_TYPES.get(block_type, ()) if f.secret}
    return {k: (MASK if k in secret and v is not None else v) for k, v in data.items()}
