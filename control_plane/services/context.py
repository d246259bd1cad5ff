"""The bundle of collaborators every service uses: store, settings, clock, cipher, pushers."""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.clock import Clock
from control_plane.services.crypto import BlockCipher
from control_plane.settings import Settings
from control_plane.storage.base import Store
from pushers.base import PusherRegistry


@dataclass
class ServiceContext:
    store: Store
    settings: Settings
    clock: Clock
    cipher: BlockCipher
    pushers: PusherRegistry
