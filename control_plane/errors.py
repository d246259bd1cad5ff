"""The one error hierarchy of pushpool.

Every error the control plane, the pushers and the SDK raise on purpose derives
from :class:`PushpoolError`. The API maps each class to an HTTP status through
``http_status``; the CLI prints ``str(error)`` as its one-line message.
"""

from __future__ import annotations

from typing import Any


class PushpoolError(Exception):
    """Base class of every deliberate pushpool error."""

    http_status = 500

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Optional machine-readable details: ``[{"loc": [...], "msg": "..."}]``.
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message


class InvalidInput(PushpoolError):
    """A value is wrong; the message names the field, ``fields`` lists every bad field's path."""

    http_status = 422

    @property
    def fields(self) -> list[str]:
        return [".".join(str(p) for p in e.get("loc", [])) for e in self.errors]


class NotFound(PushpoolError):
    """The object does not exist, or exists in a workspace the caller cannot see."""

    http_status = 404


class AlreadyExists(PushpoolError):
    """An object with that name already exists in the workspace."""

    http_status = 409


class Conflict(PushpoolError):
    """The object is in a state that does not allow the operation (e.g. a state transition)."""

    http_status = 409


class Unauthorized(PushpoolError):
    """Missing, unknown, expired or revoked credentials."""

    http_status = 401

    def __init__(self, reason: str = "unknown") -> None:
        super().__init__("Invalid authentication credentials")
        self.reason = reason


class Forbidden(PushpoolError):
    """The caller is authenticated but its role lacks the permission."""

    http_status = 403


class ConfigurationError(PushpoolError):
    """Local configuration (settings, profile, key files) is missing or invalid."""

    http_status = 500


class TooLarge(PushpoolError):
    """A request body or one of its fields is over its size limit; the message names the limit and its setting."""

    http_status = 413


class TooManyRequests(PushpoolError):
    """A source made too many failed attempts (bad keys, unknown webhooks) in a short time."""

    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(PushpoolError):
    """The control plane cannot store anything right now (a full disk, a read-only database)."""

    http_status = 503
