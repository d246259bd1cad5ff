"""What the control plane measures about itself, and where the figures go.

One small interface (:class:`Metrics`) is called where things happen — a run changing state, a submission and
how late it was, a cloud's refusal, a crash and its reason, each tick pass, each API request, events and log
lines — and three implementations send the figures on:

* :class:`PrometheusMetrics` (the embedded server): ``prometheus-client`` counters, histograms and gauges in a
  registry of the app's own, served at ``/metrics`` (loopback callers, or the operator's token);
* :class:`EmfMetrics` (Lambda): the same measurements as CloudWatch metrics in the Embedded Metric Format,
  written as JSON lines into the function's own log at the end of each invocation — no API calls, no cost when
  nothing happens;
* :class:`Metrics` itself: does nothing (``PUSHPOOL_METRICS=off``).

Labels are bounded sets only: pool types, state types, error kinds, crash reasons, pass names, route templates
(``/api/workspaces/{workspace}/flow_runs/{run_id}``, never a path with an id in it), methods and status codes —
never an id, a name a tenant chose, or a secret.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

#: Seconds between a run's scheduled time and its submission (dispatch lateness): the buckets an alert reads.
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: Why infrastructure ended a run, as a bounded label.
CRASH_REASONS = ("out_of_memory", "image_pull", "failed_to_start", "vanished", "spot_or_host", "max_runtime",
                 "exit_code", "other")


def crash_reason(exit_code: int | None, reason: str | None, missing: bool = False) -> str:
    """A crash's reason as one of :data:`CRASH_REASONS` (from the pushers' own wording, not a cloud's)."""
    text = (reason or "").lower()
    if missing:
        return "vanished"
    if exit_code == 137 or "out of memory" in text:
        return "out_of_memory"
    if "image pull" in text:
        return "image_pull"
    if "failed to start" in text or "failed to deploy" in text:
        return "failed_to_start"
    if "spot" in text or "host was terminated" in text:
        return "spot_or_host"
    if "maximum runtime" in text:
        return "max_runtime"
    return "exit_code" if exit_code else "other"


class Metrics:
    """The measurements; this base records nothing."""

    enabled = False

    def state_changed(self, pool_type: str, state: str) -> None: ...
    def dispatched(self, pool_type: str, lateness_seconds: float) -> None: ...
    def submission_failed(self, pool_type: str, kind: str) -> None: ...
    def crashed(self, pool_type: str, reason: str) -> None: ...
    def pass_took(self, name: str, seconds: float, *, failed: bool = False) -> None: ...
    def due_runs(self, pool_type: str, count: int) -> None: ...
    def api_request(self, route: str, method: str, status: int, seconds: float) -> None: ...
    def events(self, written: int = 0, dropped: int = 0) -> None: ...
    def log_lines(self, count: int) -> None: ...


class PrometheusMetrics(Metrics):
    """Prometheus metrics in a registry of their own (one per app, so tests and apps never share counters)."""

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self._transitions = Counter("pushpool_flow_run_transitions", "Flow runs entering a state",
                                    ["pool_type", "state"], registry=r)
        self._lateness = Histogram("pushpool_dispatch_lateness_seconds", "Submitted time minus scheduled time",
                                   ["pool_type"], buckets=LATENESS_BUCKETS, registry=r)
        self._submission_errors = Counter("pushpool_submission_errors", "Submissions a cloud refused or failed",
                                          ["pool_type", "kind"], registry=r)
        self._crashes = Counter("pushpool_flow_run_crashes", "Runs CRASHED by the reconciler, by reason",
                                ["pool_type", "reason"], registry=r)
        self._passes = Histogram("pushpool_tick_pass_duration_seconds", "How long each tick pass took", ["name"],
                                 buckets=PASS_BUCKETS, registry=r)
        self._pass_errors = Counter("pushpool_tick_pass_errors", "Tick passes that raised", ["name"], registry=r)
        self._due = Gauge("pushpool_due_runs", "Runs due and not yet claimed after a dispatch pass (at most "
                          "1,000 counted a pool)", ["pool_type"], registry=r)
        self._requests = Histogram("pushpool_api_request_duration_seconds", "API requests by route template",
                                   ["route", "method", "status"], buckets=REQUEST_BUCKETS, registry=r)
        self._events = Counter("pushpool_events", "Events written or dropped", ["outcome"], registry=r)
        self._log_lines = Counter("pushpool_log_lines_ingested", "Flow-run log lines taken by the API", registry=r)

    def _child(self, metric: Any, *labels: str) -> Any:
        """A labelled child, kept: the busy paths (each request, each state) skip prometheus-client's checks."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def state_changed(self, pool_type: str, state: str) -> None:
        self._child(self._transitions, pool_type, state).inc()

    def dispatched(self, pool_type: str, lateness_seconds: float) -> None:
        self._lateness.labels(pool_type).observe(max(0.0, lateness_seconds))

    def submission_failed(self, pool_type: str, kind: str) -> None:
        self._submission_errors.labels(pool_type, kind).inc()

    def crashed(self, pool_type: str, reason: str) -> None:
        self._crashes.labels(pool_type, reason).inc()

    def pass_took(self, name: str, seconds: float, *, failed: bool = False) -> None:
        self._passes.labels(name).observe(seconds)
        if failed:
            self._pass_errors.labels(name).inc()

    def due_runs(self, pool_type: str, count: int) -> None:
        self._due.labels(pool_type).set(count)

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self._requests, route, method, str(status)).observe(seconds)

    def events(self, written: int = 0, dropped: int = 0) -> None:
        if written:
            self._events.labels("written").inc(written)
        if dropped:
            self._events.labels("dropped").inc(dropped)

    def log_lines(self, count: int) -> None:
        self._log_lines.inc(count)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: EMF: at most 100 values per metric in one line (CloudWatch's limit).
EMF_VALUES_PER_LINE = 100


class EmfMetrics(Metrics):
    """CloudWatch metrics in the Embedded Metric Format: gathered during an invocation, written by :meth:`flush`
    as JSON lines to the function's log (stdout), which CloudWatch turns into metrics in ``namespace``."""

    enabled = True

    def __init__(self, namespace: str = "pushpool", stream: TextIO | None = None) -> None:
        self.namespace, self._stream = namespace, stream
        self._lock = threading.Lock()
        # (metric name, unit, dimensions as a tuple of pairs) → values
        self._values: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)

    def _add(self, name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
        with self._lock:
            self._values[(name, unit, tuple(sorted(dimensions.items())))].append(value)

    def state_changed(self, pool_type: str, state: str) -> None:
        self._add("FlowRunTransitions", 1, PoolType=pool_type, State=state)

    def dispatched(self, pool_type: str, lateness_seconds: float) -> None:
        self._add("DispatchLateness", max(0.0, lateness_seconds), "Seconds", PoolType=pool_type)
        self._add("DispatchLateness", max(0.0, lateness_seconds), "Seconds")  # all pools: what the alarm reads

    def submission_failed(self, pool_type: str, kind: str) -> None:
        self._add("SubmissionErrors", 1, PoolType=pool_type, Kind=kind)

    def crashed(self, pool_type: str, reason: str) -> None:
        self._add("FlowRunCrashes", 1, PoolType=pool_type, Reason=reason)

    def pass_took(self, name: str, seconds: float, *, failed: bool = False) -> None:
        self._add("TickPassDuration", seconds, "Seconds", Pass=name)
        if failed:
            self._add("TickErrors", 1, Pass=name)
            self._add("TickErrors", 1)

    def due_runs(self, pool_type: str, count: int) -> None:
        self._add("DueRuns", count, PoolType=pool_type)

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._add("ApiRequestDuration", seconds, "Seconds", Route=route, Method=method, Status=str(status))

    def events(self, written: int = 0, dropped: int = 0) -> None:
        if written:
            self._add("EventsWritten", written)
        if dropped:
            self._add("EventsDropped", dropped)

    def log_lines(self, count: int) -> None:
        self._add("LogLinesIngested", count)

    def lines(self, timestamp_ms: int | None = None) -> list[str]:
        """What :meth:`flush` writes: one EMF document per metric and dimension set (and per 100 values), taking
        what was gathered."""
        with self._lock:
            gathered, self._values = self._values, defaultdict(list)
        at = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        out = []
        for (name, unit, dimensions), values in sorted(gathered.items()):
            for start in range(0, len(values), EMF_VALUES_PER_LINE):
                chunk = values[start:start + EMF_VALUES_PER_LINE]
                document: dict[str, Any] = {
                    "_aws": {"Timestamp": at, "CloudWatchMetrics": [{
                        "Namespace": self.namespace, "Dimensions": [[k for k, _ in dimensions]],
                        "Metrics": [{"Name": name, "Unit": unit}]}]},
                    **dict(dimensions), name: chunk if len(chunk) > 1 else chunk[0]}
                out.append(json.dumps(document, separators=(",", ":")))
        return out

    def flush(self) -> None:
        lines = self.lines()
        if lines:
            stream = self._stream or sys.stdout
            stream.write("\n".join(lines) + "\n")
            stream.flush()


@contextmanager
def measured(metrics: Metrics, name: str) -> Iterator[None]:
    """Time one tick pass (``scheduler``, ``dispatcher``, ``reconciler``, ``automations``) and count it failed when
    it raises (the exception goes on)."""
    started, failed = time.perf_counter(), False
    try:
        yield
    except Exception:
        failed = True
        raise
    finally:
        metrics.pass_took(name, time.perf_counter() - started, failed=failed)


def metrics_for(setting: str, *, on_lambda: bool) -> Metrics:
    """``PUSHPOOL_METRICS``: ``auto`` (Prometheus on the embedded server, EMF on Lambda), ``prometheus``, ``emf``
    or ``off``."""
    kind = {"auto": "emf" if on_lambda else "prometheus"}.get(setting, setting)
    if kind == "prometheus":
        return PrometheusMetrics()
    if kind == "emf":
        return EmfMetrics()
    return Metrics()
