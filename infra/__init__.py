"""CloudFormation for the serverless control plane (``pushpool.yaml``), shipped as package data so an
installed ``pushpool`` can deploy it (``pushpool control-plane deploy``)."""

from __future__ import annotations

from importlib import resources

STACK_TEMPLATE = "pushpool.yaml"


def stack_template() -> str:
    """The text of the control plane's CloudFormation template."""
    return resources.files(__name__).joinpath(STACK_TEMPLATE).read_text()
