"""Envelope encryption of block data with AWS KMS.

Each encryption asks KMS for a fresh 256-bit data key (``GenerateDataKey``),
encrypts the block's JSON with it (AES-256-GCM), and keeps only the KMS-encrypted
copy of the data key next to the ciphertext::

    kms1:<base64 encrypted data key>:<base64 nonce + ciphertext>

so the plaintext data key never touches storage and reading a block needs
``kms:Decrypt`` on the stack's key. Decrypted data keys are cached in memory for the
life of the container, so a warm Lambda does not call KMS for every read.

The secret that signs run tokens is one more data key, generated once and stored
(encrypted) in the store's meta item ``signing_key``: every container of the stack
derives the same secrets from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from typing import Any

from pushpool.control_plane.errors import ConfigurationError
from pushpool.control_plane.storage.base import Store

PREFIX = "kms1:"
_BLOCK_CONTEXT = {"pushpool:purpose": "block-data"}
_SIGNING_CONTEXT = {"pushpool:purpose": "signing-key"}
_CACHE_LIMIT = 1024


class KmsBlockCipher:
    def __init__(self, key_id: str, store: Store, *, region: str | None = None, client: Any = None) -> None:
        self.key_id = key_id
        self._store = store
        self._region = region
        self._client = client
        self._plain_keys: dict[bytes, bytes] = {}
        self._signing_key: bytes | None = None
        self._lock = threading.Lock()
        self._signing_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client("kms", region_name=self._region)
        return self._client

    def _kms(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise ConfigurationError(
                f"KMS {operation} with key {self.key_id!r} failed ({code}): the control plane's role needs "
                "kms:GenerateDataKey and kms:Decrypt on it, and the key must be enabled") from exc
        except BotoCoreError as exc:
            raise ConfigurationError(f"KMS cannot be reached: {exc}") from exc

    def _data_key(self, blob: bytes, context: dict[str, str]) -> bytes:
        with self._lock:
            cached = self._plain_keys.get(blob)
        if cached is not None:
            return cached
        plain = self._kms("decrypt", CiphertextBlob=blob, KeyId=self.key_id, EncryptionContext=context)["Plaintext"]
        with self._lock:
            if len(self._plain_keys) >= _CACHE_LIMIT:
                self._plain_keys.clear()
            self._plain_keys[blob] = plain
        return plain

    # ------------------------------------------------------------------ Cipher
    def encrypt(self, data: dict[str, Any]) -> str:
        answer = self._kms("generate_data_key", KeyId=self.key_id, KeySpec="AES_256",
                           EncryptionContext=_BLOCK_CONTEXT)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # on first use: not on every cold start

        nonce = os.urandom(12)
        sealed = AESGCM(answer["Plaintext"]).encrypt(nonce, json.dumps(data, sort_keys=True).encode(), None)
        blob = answer["CiphertextBlob"]
        with self._lock:
            self._plain_keys[blob] = answer["Plaintext"]
        return f"{PREFIX}{_b64(blob)}:{_b64(nonce + sealed)}"

    def decrypt(self, token: str) -> dict[str, Any]:
        if not token.startswith(PREFIX):
            raise ConfigurationError("A block was not encrypted with KMS: it was written by a control plane "
                                     "with a different encryption setting")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            blob_text, sealed_text = token[len(PREFIX):].split(":")
            sealed = base64.b64decode(sealed_text)
            plain = AESGCM(self._data_key(base64.b64decode(blob_text), _BLOCK_CONTEXT)).decrypt(
                sealed[:12], sealed[12:], None)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError("A block could not be decrypted: its ciphertext is damaged") from exc
        return json.loads(plain)

    def derive_key(self, purpose: str) -> bytes:
        if self._signing_key is None:
            # One thread loads (or makes) the key; the dispatcher's submission threads all want it at once
            # on a fresh container, and each would otherwise call KMS and race to store a key of its own.
            with self._signing_lock:
                if self._signing_key is None:
                    stored = self._store.get_meta("signing_key")
                    if stored is None:
                        answer = self._kms("generate_data_key", KeyId=self.key_id, KeySpec="AES_256",
                                           EncryptionContext=_SIGNING_CONTEXT)
                        stored = self._store.set_meta_once("signing_key", _b64(answer["CiphertextBlob"]))
                    self._signing_key = self._data_key(base64.b64decode(stored), _SIGNING_CONTEXT)
        return hmac.new(self._signing_key, purpose.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
