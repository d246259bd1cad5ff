"""pushpool SDK: flows, the HTTP client, the in-container runner and the ``pushpool`` CLI."""

from sdk.flows import Flow, flow

__all__ = ["Flow", "flow"]
