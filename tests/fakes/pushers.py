"""A pusher that records what it is asked and answers what the test tells it to."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from pushpool.pushers.base import InfraState, InfraStatus, Job, PermanentPusherError, Submission, TransientPusherError
from pushpool.pushers.local import LocalPusher


class RecordingPusher:
    """Submissions succeed unless errors are queued; statuses are RUNNING unless set."""

    def __init__(self, context: Any = None) -> None:
        self.jobs: list[Job] = []
        self.submits_per_run: Counter[str] = Counter()
        self.statuses: dict[str, InfraStatus] = {}
        self.cancelled: list[str] = []
        self.cleaned: list[str] = []
        #: Errors raised by the next submit calls, in order ("transient" / "permanent" / "echo": a permanent
        #: error whose message repeats the job's whole configuration, as careless cloud errors do).
        self.errors: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return LocalPusher.default_job_template()

    def submit(self, job: Job) -> Submission:
        with self._lock:
            if self.errors:
                kind = self.errors.pop(0)
                if kind == "transient":
                    raise TransientPusherError("throttled (injected)")
                if kind == "echo":
                    raise PermanentPusherError(f"invalid configuration (injected): {job.configuration}")
                raise PermanentPusherError("access denied (injected)")
            self.jobs.append(job)
            self.submits_per_run[job.flow_run_id] += 1
        return Submission(infra_id=f"fake-{job.flow_run_id}", console_url=f"https://console.example/{job.flow_run_id}")

    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        return {i: self.statuses.get(i, InfraStatus(InfraState.RUNNING)) for i in infra_ids}

    def cancel(self, infra_id: str) -> None:
        self.cancelled.append(infra_id)

    def cleanup(self, infra_id: str) -> None:
        self.cleaned.append(infra_id)

    def finish(self, run_id: str, exit_code: int = 0, reason: str | None = None) -> None:
        self.statuses[f"fake-{run_id}"] = InfraStatus(InfraState.EXITED, exit_code, reason)
