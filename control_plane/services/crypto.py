"""Encryption at rest for block data (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from settings (``PUSHPOOL_ENCRYPTION_KEY``) or is generated once into
``$PUSHPOOL_HOME/encryption.key`` with mode 0600. With a KMS key configured the
control plane uses :class:`control_plane.services.kms_crypto.KmsBlockCipher`
instead; both satisfy :class:`Cipher`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any, Protocol

from pushpool.control_plane.errors import ConfigurationError
from pushpool.control_plane.home import prepare_home


class Cipher(Protocol):
    def encrypt(self, data: dict[str, Any]) -> str: ...
    def decrypt(self, token: str) -> dict[str, Any]: ...
    def derive_key(self, purpose: str) -> bytes:
        """A stable secret for another purpose (e.g. signing run tokens)."""
        ...


def key_check(cipher: Cipher) -> str:
    """A digest of a key derived from ``cipher``'s key (never the key): equal digests, the same key. Replicas of a
    shared store and an export's header carry it."""
    return hashlib.sha256(cipher.derive_key("replica key check")).hexdigest()


def load_or_create_key(home: Path) -> str:
    path = home / "encryption.key"
    if path.exists():
        return path.read_text().strip()
    prepare_home(home)
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


class BlockCipher:
    def __init__(self, key: str) -> None:
        from cryptography.fernet import Fernet  # here, not with the module: the Lambda handler imports it (KMS)

        try:
            self._fernet = Fernet(key.encode())
            self._key = key.encode()
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "The block encryption key is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from exc

    def derive_key(self, purpose: str) -> bytes:
        """A secret for another purpose (e.g. run tokens), derived from the encryption key."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).digest()

    def encrypt(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data, sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise ConfigurationError(
                "A block could not be decrypted: the encryption key changed since it was written"
            ) from exc
