"""The benchmark workloads. Each takes an API adapter (see ``systems.py``) and returns figures.

Every workload is bounded in count and in time: when a system is slower than the time cap
allows, the figure is computed from what it finished (and says so).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.benchmarks.systems import with_retries

FUTURE = "2031-01-01T00:00:00+00:00"  # runs created by the throughput workloads never fall due


@dataclass
class Throughput:
    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    capped: bool = False

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def note_error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(text[:160])


def _drive(api: Any, total: int, clients: int, cap_seconds: float, step: Callable[[Any, Throughput], None]
           ) -> Throughput:
    """Run ``step`` ``total`` times from ``clients`` threads (each with its own HTTP client) within the cap."""
    result = Throughput()
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + cap_seconds
    remaining = [total]

    def worker() -> None:
        with api.client() as client:
            while True:
                with lock:
                    if remaining[0] <= 0 or time.perf_counter() > deadline:
                        return
                    remaining[0] -= 1
                step(client, result)

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    result.seconds = time.perf_counter() - started
    result.capped = remaining[0] > 0
    return result


def run_creation(api: Any, deployment_id: str, *, total: int, clients: int, cap_seconds: float) -> Throughput:
    """Workload 1: create flow runs of one deployment through the HTTP API."""
    lock = threading.Lock()

    def create(client: Any, result: Throughput) -> None:
        started = time.perf_counter()
        try:
            answer = api.create_run(client, deployment_id, scheduled_time=FUTURE)
            ok, text = answer.status_code < 300, answer.text
        except Exception as exc:  # a dropped connection counts as an error, like an HTTP 5xx
            ok, text = False, repr(exc)
        elapsed = time.perf_counter() - started
        with lock:
            if ok:
                result.done += 1
                result.latencies.append(elapsed)
            else:
                result.note_error(text)

    return _drive(api, total, clients, cap_seconds, create)


def lifecycle(api: Any, deployment_id: str, *, total: int, clients: int, cap_seconds: float) -> Throughput:
    """Workload 2: create → PENDING → RUNNING → COMPLETED, as a worker and a runner report it."""
    lock = threading.Lock()

    def one(client: Any, result: Throughput) -> None:
        started = time.perf_counter()
        try:
            answer = api.create_run(client, deployment_id, scheduled_time=FUTURE)
            answer.raise_for_status()
            run_id = answer.json()["id"]
            ok, text = True, ""
            for state in ("PENDING", "RUNNING", "COMPLETED"):
                reply = api.set_state(client, run_id, state)
                if reply.status_code >= 300:
                    ok, text = False, f"{state}: {reply.status_code} {reply.text[:120]}"
                    break
        except Exception as exc:
            ok, text = False, repr(exc)
        with lock:
            if ok:
                result.done += 1
                result.latencies.append(time.perf_counter() - started)
            else:
                result.note_error(text)

    return _drive(api, total, clients, cap_seconds, one)


@dataclass
class Scheduling:
    deployments: int
    expected_runs: int
    created_runs: int
    seconds: float
    deploy_seconds: float
    deployed: int = 0

    @property
    def complete(self) -> bool:
        return self.created_runs >= self.expected_runs


TIMEZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo"]


def scheduling(api: Any, make_schedule: Callable[[str], dict], count_runs: Callable[[], int], *, deployments: int,
               pool: str | None, cap_seconds: float, runs_per_deployment: int = 288) -> Scheduling:
    """Workload 3: ``deployments`` deployments on ``*/5 * * * *`` in a mix of timezones; the time from the
    first deployment until every run of the next 24 hours exists (288 per deployment)."""
    started = time.perf_counter()
    deadline = started + cap_seconds
    made = 0
    with api.client() as client:
        for i in range(deployments):
            if time.perf_counter() > deadline:
                break
            try:
                api.create_deployment(client, f"sched-{i}", pool, **make_schedule(TIMEZONES[i % len(TIMEZONES)]))
                made += 1
            except httpx.HTTPError:  # a timeout under load: the deployment may or may not exist
                continue
    deploy_seconds = time.perf_counter() - started
    expected = deployments * runs_per_deployment
    created = count_runs()
    while created < expected and time.perf_counter() < deadline:
        time.sleep(0.5)
        created = count_runs()
    return Scheduling(deployments, expected, created, time.perf_counter() - started, deploy_seconds, made)


@dataclass
class Lateness:
    expected: int
    seen: list[float]  # seconds after the scheduled time (negative: before it)

    def percentile(self, q: float) -> float:
        if not self.seen:
            return float("nan")
        ordered = sorted(self.seen)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def abs_percentile(self, q: float) -> float:
        """Of the distance from the scheduled time, early or late (a run taken 9 s early is 9 s off)."""
        return Lateness(self.expected, [abs(v) for v in self.seen]).percentile(q)

    @property
    def maximum(self) -> float:
        return max(self.seen) if self.seen else float("nan")


def due_at(seconds_from_now: float) -> datetime:
    """A whole second, ``seconds_from_now`` or a little more from now (UTC)."""
    at = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return at.replace(microsecond=0) + timedelta(seconds=1)


def create_due_runs(api: Any, deployment_id: str, count: int, at: datetime, clients: int = 4) -> list[str]:
    """Set-up (not measured): ``count`` runs due at ``at``; busy answers are retried."""
    ids: list[str] = []
    lock = threading.Lock()

    def create(client: Any, _: Throughput) -> None:
        answer = with_retries(lambda: api.create_run(client, deployment_id, scheduled_time=at.isoformat()))
        answer.raise_for_status()
        with lock:
            ids.append(answer.json()["id"])

    _drive(api, count, clients, 600, create)
    return ids


def percentile_summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):.2f} s"
