"""pushpool's embedded server as the benchmarks run it: ``pushpool server start`` unchanged, except that
with ``--record FILE`` the ``local:push`` pusher only appends ``<run id> <unix time>`` to FILE for each
submission (the dispatch-lateness workload measures when the control plane hands a run over)."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from pushpool.control_plane.server import serve
from pushpool.control_plane.settings import Settings
from pushpool.pushers.base import InfraState, InfraStatus, Job, PusherContext, PusherRegistry, Submission
from pushpool.pushers.local import LocalPusher


class TimestampingPusher:
    """Records the moment each run is submitted; its "infrastructure" then runs forever."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return LocalPusher.default_job_template()

    def submit(self, job: Job) -> Submission:
        now = time.time()
        with self._lock:
            self._file.write(f"{job.flow_run_id} {now:.6f}\n")
        return Submission(infra_id=f"bench-{job.flow_run_id}", console_url="")

    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        return {i: InfraStatus(InfraState.RUNNING) for i in infra_ids}

    def cancel(self, infra_id: str) -> None:
        pass

    def cleanup(self, infra_id: str) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    settings = Settings(port=args.port)
    pushers = None
    if args.record:
        pushers = PusherRegistry(PusherContext(state_dir=settings.home, api_url=settings.api_url),
                                 overrides={"local:push": TimestampingPusher(args.record)})

    def remember_key(workspace: str, key: str) -> None:
        (settings.home / "bench.key").write_text(key)

    serve(settings, on_bootstrap=remember_key, log_level="warning", pushers=pushers)


if __name__ == "__main__":
    main()
