"""The bundle of collaborators every service uses (store, settings, clock, cipher, pushers), and how it is built."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushpool.control_plane.clock import Clock, SystemClock
from pushpool.control_plane.metrics import Metrics, metrics_for
from pushpool.control_plane.services.crypto import BlockCipher, Cipher, load_or_create_key
from pushpool.control_plane.services.events import EventSink
from pushpool.control_plane.services.host_runs import host_run_policy
from pushpool.control_plane.services.outbound import OutboundQueue
from pushpool.control_plane.settings import Settings
from pushpool.control_plane.storage.base import Store
from pushpool.pushers.base import PusherContext, PusherRegistry


@dataclass
class ServiceContext:
    store: Store
    settings: Settings
    clock: Clock
    cipher: Cipher
    pushers: PusherRegistry
    #: Asks for a tick soon (on Lambda: an asynchronous invoke of the tick function). ``None`` where
    #: the ticker loops continuously (the embedded server), so nothing needs waking.
    wake_ticker: Callable[[str], None] | None = None
    #: Asks for a scheduler pass soon (the embedded ticker's next loop). ``None`` on Lambda, where the
    #: minute tick fills the horizon (a deployment's own request writes the next minutes' runs itself).
    wake_scheduler: Callable[[], None] | None = None
    #: Where events go (built from the store and clock when not given).
    events: EventSink = None  # type: ignore[assignment]
    #: Fires automations on the events flushed (set up with ``events``).
    automations: Any = field(default=None, init=False)
    #: Runs calls to tenants' URLs (notifications) off the caller's thread, fairly between workspaces.
    outbound: OutboundQueue = field(default_factory=OutboundQueue)
    #: The deployment a scheduler pass that ran out of budget did not reach: the next pass starts there.
    scheduler_resume_at: str | None = field(default=None, init=False)
    #: The first running backfill the previous scheduler pass did not reach (its budget ran out).
    backfill_resume_at: str | None = field(default=None, init=False)
    #: What the control plane measures about itself (control_plane/metrics.py).
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        if self.events is None:
            from pushpool.control_plane.services.automations import AutomationEngine

            self.events = EventSink(self.store, self.clock, self.metrics)
            self.automations = AutomationEngine(self)
            self.events.listeners.append(self.automations)

    def request_tick(self, reason: str) -> None:
        """Best effort: a failed wake-up only means the next scheduled tick does the work."""
        if self.wake_ticker is None:
            return
        try:
            self.wake_ticker(reason)
        except Exception:
            logging.getLogger("pushpool.tick").warning("Could not wake the ticker (%s)", reason, exc_info=True)


    def request_scheduling(self) -> None:
        if self.wake_scheduler is not None:
            self.wake_scheduler()


def build_cipher(settings: Settings, store: Store) -> Cipher:
    """KMS envelope encryption when a KMS key is configured, else Fernet with the local or given key."""
    if settings.kms_key_id:
        from pushpool.control_plane.services.kms_crypto import KmsBlockCipher

        return KmsBlockCipher(settings.kms_key_id, store)
    return BlockCipher(settings.encryption_key or load_or_create_key(settings.home))


def build_context(settings: Settings, store: Store, clock: Clock | None = None,
                  pushers: PusherRegistry | None = None, *, on_lambda: bool = False) -> ServiceContext:
    return ServiceContext(
        store=store, settings=settings, clock=clock or SystemClock(), cipher=build_cipher(settings, store),
        pushers=pushers or PusherRegistry(PusherContext(state_dir=settings.home, api_url=settings.api_url,
                                                        host_runs=host_run_policy(settings))),
        metrics=metrics_for(settings.metrics, on_lambda=on_lambda),
    )
