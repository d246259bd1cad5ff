"""``run_deployment``: start a run of a deployment from Python and (by default) wait for it."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

from pushpool.client import PushpoolClient
from pushpool.context import current_flow_run, run_or_profile_client
from pushpool.control_plane.errors import PushpoolError
from pushpool.control_plane.models import FlowRun

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class RunTimeout(PushpoolError):
    """The run did not reach a final state within the timeout."""


def wait_for_final(client: PushpoolClient, run_id: str, timeout: float | None = None,
                   poll_seconds: float = 1.0, on_change: Any = None) -> dict[str, Any]:
    """Poll until the run is final; ``on_change(run)`` is called on every state change."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        run = client.read_flow_run(run_id)
        seen = (run["state"]["type"], run["state"]["name"])
        if seen != last and on_change is not None:
            on_change(run)
        last = seen
        if run["state"]["type"] in FINAL:
            return run
        if deadline is not None and time.monotonic() >= deadline:
            raise RunTimeout(f"flow run {run['name']} ({run_id}) is still {run['state']['type']} after {timeout}s")
        time.sleep(poll_seconds)


def run_deployment(name: str, parameters: dict[str, Any] | None = None,
                   job_variables: dict[str, Any] | None = None, scheduled_time: datetime | None = None,
                   tags: list[str] | None = None, timeout: float | None = None, flow_run_name: str | None = None,
                   client: PushpoolClient | None = None, poll_seconds: float = 1.0) -> FlowRun:
    """Create a run of ``flow-name/deployment-name``; wait for a final state unless ``timeout=0``.

    ``timeout=None`` waits as long as it takes; on timeout :class:`RunTimeout` is raised. Inside a
    deployment's run the new run is a child of that run (``parent_flow_run_id``), started with the
    run's own token; cancelling the parent cancels it.
    """
    flow_run = current_flow_run()
    parent = flow_run.flow_run_id if client is None and flow_run is not None and flow_run.client else None
    body: dict[str, Any] = {"parameters": parameters or {}, "job_variables": job_variables or {}, "tags": tags or []}
    if scheduled_time is not None:
        body["scheduled_time"] = scheduled_time.isoformat()
    if flow_run_name:
        body["name"] = flow_run_name
    with contextlib.nullcontext(client) if client is not None else run_or_profile_client() as client:
        if parent is not None:
            run = client.request("POST", client.ws(f"/flow_runs/{parent}/children"), json={**body, "deployment": name})
        else:
            run = client.create_flow_run(client.read_deployment_by_name(name)["id"], **body)
        if timeout != 0:
            run = wait_for_final(client, run["id"], timeout, poll_seconds)
        return FlowRun.model_validate(run)
