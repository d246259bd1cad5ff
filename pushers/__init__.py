"""Pushers: one module per compute target, behind the small protocol in :mod:`pushers.base`."""
