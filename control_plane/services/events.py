"""Events the control plane emits, and the sink that stores them and hands them to automations.

What is emitted (names; resources are ``pushpool.<kind>.<id>``):

* ``pushpool.flow-run.<State name>`` for every state change of a run (``Scheduled`` for runs
  created through the API; the scheduler's own runs are not announced one by one), related to
  its deployment, flow, work pool, work queue and tags; the payload has the intended
  ``from``/``to`` state types and the new state;
* ``pushpool.deployment.created|updated|deleted``, ``pushpool.work-pool.created|updated|deleted|
  paused|resumed``;
* ``pushpool.infrastructure.submitted`` (the pusher's id and console URL) and
  ``pushpool.infrastructure.crashed`` (the reason), about the infrastructure, related to the run;
* ``pushpool.webhook.received|failed`` and ``pushpool.automation.triggered|action.executed|
  action.failed``.

Emitting only appends to a buffer: the write happens in :meth:`EventSink.flush`, in batches —
every 0.2 s on the embedded server (a background thread), at the end of each request and tick
on Lambda. Automations see each flushed batch. An event in the buffer when a process dies is
lost; the state changes themselves are already stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pushpool.control_plane.clock import Clock
from pushpool.control_plane.event_models import RESOURCE_ID, RESOURCE_NAME, RESOURCE_ROLE, Event
from pushpool.control_plane.models import Deployment, FlowRun, StateType, WorkPool, new_id

log = logging.getLogger("pushpool.events")

FLUSH_INTERVAL = 0.2
#: A chain of automations reacting to each other's events is followed this deep in one flush (the rest
#: waits for the next flush, so no chain can spin a flush forever).
FLUSH_ROUNDS = 5
MAX_PENDING = 50_000
#: Events kept in memory while the store refuses writes (a full disk), for the next flush to retry.
MAX_HELD = MAX_PENDING


def resource(kind: str, id_: str, name: str | None = None, **labels: str) -> dict[str, str]:
    out = {RESOURCE_ID: f"pushpool.{kind}.{id_}", **labels}
    if name is not None:
        out[RESOURCE_NAME] = name
    return out


def related(kind: str, id_: str, name: str | None = None, role: str | None = None) -> dict[str, str]:
    return {**resource(kind, id_, name), RESOURCE_ROLE: role or kind}


class EventSink:
    def __init__(self, store: Any, clock: Clock, metrics: Any = None) -> None:
        from pushpool.control_plane.metrics import Metrics

        self.store, self.clock, self.metrics = store, clock, metrics or Metrics()
        self._pool_types: dict[str, str] = {}
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        #: Called with each flushed batch (the automation engine); errors are logged, never raised.
        self.listeners: list[Callable[[list[Event]], None]] = []
        self._pool_names: dict[str, str] = {}

    # ------------------------------------------------------------------ emitting
    @property
    def background(self) -> bool:
        return self._thread is not None

    def emit(self, workspace_id: str, name: str, resource: dict[str, str], related: Iterable[dict[str, str]] = (),
             payload: dict[str, Any] | None = None, occurred: datetime | None = None) -> Event:
        now = self.clock.now()
        # Built from the control plane's own values (UTC times, string labels made by resource() and
        # related()), so pydantic's validation is skipped: this runs on every state change. Events from
        # outside (webhooks) are validated where they are made and come in through add().
        # (the id is given too: for a default factory, pydantic 2.14 inspects the factory's signature every time)
        event = Event.model_construct(id=new_id(), workspace_id=workspace_id, occurred=occurred or now, received=now,
                                      event=name, resource=resource, related=list(related), payload=payload or {})
        self.add(event)
        return event

    def add(self, event: Event) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                log.warning("event buffer full: dropping %s", event.event)
                return
            self._pending.append(event)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> list[Event]:
        """Store what was emitted and hand it to the listeners; what the listeners emit in turn (an
        automation's own events, the runs it made) is stored too, up to ``FLUSH_ROUNDS`` rounds.
        Returns everything stored."""
        flushed: list[Event] = []
        with self._flush_lock:
            for _ in range(FLUSH_ROUNDS):
                with self._lock:
                    batch, self._pending = self._pending, []
                if not batch:
                    break
                try:
                    self.store.append_events(batch)
                except Exception:
                    kept = self._requeue(batch)
                    log.exception("could not store %d events; %d kept in memory for the next flush", len(batch), kept)
                    break
                flushed += batch
                self.metrics.events(written=len(batch))
                for listener in self.listeners:
                    try:
                        listener(batch)
                    except Exception:
                        log.exception("an event listener failed")
        return flushed

    def _requeue(self, batch: list[Event]) -> int:
        """Put a batch the store refused (a full disk) back in front, keeping at most ``MAX_HELD`` events
        (the newest are dropped first, with a log line): returns how many are held."""
        with self._lock:
            held = batch + self._pending
            if len(held) > MAX_HELD:
                log.error("dropping %d events: the store has refused writes for too long", len(held) - MAX_HELD)
                self.metrics.events(dropped=len(held) - MAX_HELD)
                held = held[:MAX_HELD]
            self._pending = held
            return len(held)

    # ------------------------------------------------------------------ background flushing (embedded server)
    def start(self, interval: float = FLUSH_INTERVAL) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stopping:
                self._wake.wait(interval)
                self._wake.clear()
                self.flush()

        self._thread = threading.Thread(target=loop, name="pushpool-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()

    # ------------------------------------------------------------------ what the control plane emits
    def pool_name(self, workspace_id: str, pool_id: str) -> str | None:
        if pool_id not in self._pool_names:
            pool = self.store.get_work_pool_by_id(workspace_id, pool_id)
            if pool is None:
                return None
            self._pool_names[pool_id], self._pool_types[pool_id] = pool.name, pool.type
        return self._pool_names[pool_id]

    def pool_type(self, workspace_id: str, pool_id: str) -> str:
        """The pool's type (a metric label), ``unknown`` for a pool deleted meanwhile."""
        self.pool_name(workspace_id, pool_id)
        return self._pool_types.get(pool_id, "unknown")

    def run_related(self, run: FlowRun) -> list[dict[str, str]]:
        return [
            related("deployment", run.deployment_id, f"{run.flow_name}/{run.deployment_name}"),
            related("flow", run.flow_name, run.flow_name),
            related("work-pool", run.pool_id, self.pool_name(run.workspace_id, run.pool_id)),
            related("work-queue", run.queue_id),
            *(related("tag", tag, tag) for tag in run.tags),
        ]

    def flow_run_state(self, run: FlowRun, previous: StateType | None) -> Event:
        state = run.state
        self.metrics.state_changed(self.pool_type(run.workspace_id, run.pool_id), state.type.value)
        labels = {"pushpool.state-type": state.type.value, "pushpool.state-name": state.name}
        payload = {"intended": {"from": previous.value if previous else None, "to": state.type.value},
                   "validated_state": {"type": state.type.value, "name": state.name, "message": state.message},
                   "parameters": run.parameters}
        return self.emit(run.workspace_id, f"pushpool.flow-run.{state.name}", resource("flow-run", run.id, run.name,
                         **labels), self.run_related(run), payload, occurred=state.timestamp)

    def infrastructure(self, run: FlowRun, what: str, **payload: Any) -> Event:
        infra = resource("infrastructure", run.infra_id or run.id, run.infra_id)
        return self.emit(run.workspace_id, f"pushpool.infrastructure.{what}", infra,
                         [related("flow-run", run.id, run.name), *self.run_related(run)], payload)

    def deployment(self, deployment: Deployment, what: str) -> Event:
        return self.emit(deployment.workspace_id, f"pushpool.deployment.{what}",
                         resource("deployment", deployment.id, deployment.full_name),
                         [related("flow", deployment.flow_name, deployment.flow_name),
                          related("work-pool", deployment.pool_id,
                                  self.pool_name(deployment.workspace_id, deployment.pool_id))],
                         {"paused": deployment.paused, "version": deployment.version})

    def work_pool(self, pool: WorkPool, what: str) -> Event:
        self._pool_names.pop(pool.id, None)
        self._pool_types.pop(pool.id, None)
        return self.emit(pool.workspace_id, f"pushpool.work-pool.{what}",
                         resource("work-pool", pool.id, pool.name, **{"pushpool.work-pool.type": pool.type}),
                         payload={"paused": pool.paused})
