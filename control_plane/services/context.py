"""The bundle of collaborators every service uses: store, settings, clock, cipher, pushers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from control_plane.clock import Clock
from control_plane.services.crypto import Cipher
from control_plane.settings import Settings
from control_plane.storage.base import Store
from pushers.base import PusherRegistry


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

    def request_tick(self, reason: str) -> None:
        """Best effort: a failed wake-up only means the next scheduled tick does the work."""
        if self.wake_ticker is None:
            return
        try:
            self.wake_ticker(reason)
        except Exception:
            logging.getLogger("pushpool.tick").warning("Could not wake the ticker (%s)", reason, exc_info=True)
