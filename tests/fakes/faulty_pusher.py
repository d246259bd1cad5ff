"""A pusher that fails like a cloud API: some transient errors, a few permanent ones, random latency.

Every successful submission is appended to a log file (one line per call, O_APPEND),
so submissions from several processes can be counted afterwards. Like a real
cloud, a repeated submission of the same run is idempotent: the same infra id.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from pushpool.pushers.base import InfraState, InfraStatus, Job, PermanentPusherError, Submission, TransientPusherError
from pushpool.pushers.local import LocalPusher


class FaultyPusher:
    def __init__(self, log: Path, transient: float = 0.10, permanent: float = 0.01, max_latency: float = 0.003,
                 seed: int | None = None) -> None:
        self.log = log
        self.transient, self.permanent, self.max_latency = transient, permanent, max_latency
        self.random = random.Random(seed)

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return LocalPusher.default_job_template()

    def submit(self, job: Job) -> Submission:
        time.sleep(self.random.uniform(0, self.max_latency))
        roll = self.random.random()
        if roll < self.permanent:
            raise PermanentPusherError("invalid image (injected)")
        if roll < self.permanent + self.transient:
            raise TransientPusherError("Rate exceeded (injected)")
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{job.flow_run_id}\n".encode())
        finally:
            os.close(fd)
        return Submission(infra_id=f"task-{job.flow_run_id}")

    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        return {i: InfraStatus(InfraState.RUNNING) for i in infra_ids}

    def cancel(self, infra_id: str) -> None:
        pass

    def cleanup(self, infra_id: str) -> None:
        pass


def submissions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []
