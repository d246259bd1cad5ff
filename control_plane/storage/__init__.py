"""Storage backends behind one :class:`~control_plane.storage.base.Store` protocol."""

from control_plane.storage.base import ClaimResult, Store

__all__ = ["ClaimResult", "Store"]
