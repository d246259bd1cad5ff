"""An example flow, deployed by the demo (``make demo``)."""

import platform

from pushpool import flow


@flow(log_prints=True)
def hello(name: str = "world", count: int = 1) -> str:
    """Say hello a few times."""
    for i in range(count):
        print(f"hello {name} ({i + 1}/{count}) from {platform.node()}")
    return f"greeted {name}"
