"""Exceptions the SDK raises (the control plane's one hierarchy, under SDK-friendly names)."""

from pushpool.control_plane.errors import (
    AlreadyExists,
    ConfigurationError,
    Conflict,
    Forbidden,
    NotFound,
    PushpoolError,
    Unauthorized,
)
from pushpool.control_plane.errors import InvalidInput as ValidationError

__all__ = ["AlreadyExists", "ConfigurationError", "Conflict", "Forbidden", "NotFound", "PushpoolError",
           "Unauthorized", "ValidationError"]
