"""A project of flows deployed to a ``local:push`` pool of a live server, for the end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.live_server import wait_for_state

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class LocalProject:
    client: Any
    dir: Path
    pool: str

    def deploy(self, flow_name: str, name: str = "d", **fields: Any) -> dict:
        """Deploy ``flows.py:<flow_name>`` (the function's name) from the project's directory."""
        return self.client.apply_deployment(flow_name=flow_name, name=name, entrypoint=f"flows.py:{flow_name}",
                                            work_pool_name=self.pool,
                                            job_variables={"working_dir": str(self.dir)}, **fields)

    def run(self, deployment: dict, timeout: float = 60, **fields: Any) -> dict:
        """Start a run and wait until it is final; returns it."""
        run = self.client.create_flow_run(deployment["id"], **fields)
        return wait_for_state(self.client, run["id"], FINAL, timeout=timeout)

    def ws(self, path: str) -> str:
        return self.client.ws(path)

    def get(self, path: str, **params: Any) -> Any:
        return self.client.request("GET", self.client.ws(path), params=params or None)


def local_project(live: Any, tmp_path: Path, flows: str, pool: str = "local", **pool_fields: Any) -> LocalProject:
    """``flows`` written to ``flows.py`` of a fresh project, and a ``local:push`` pool named ``pool``."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text(flows)
    client = live.client()
    client.create_work_pool(pool, "local:push", **pool_fields)
    return LocalProject(client, project, pool)
