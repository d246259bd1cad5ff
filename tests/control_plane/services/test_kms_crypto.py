"""KMS envelope encryption of blocks, against KMS on moto_server."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from pushpool.control_plane.errors import ConfigurationError
from pushpool.control_plane.services.crypto import BlockCipher
from pushpool.control_plane.services.kms_crypto import KmsBlockCipher
from pushpool.control_plane.storage.sqlite import SqliteStore


@pytest.fixture
def key_id(aws) -> str:
    return aws.client("kms").create_key(Description="pushpool test")["KeyMetadata"]["Arn"]


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "meta.db")
    yield store
    store.close()


def counting(cipher: KmsBlockCipher) -> list[str]:
    calls: list[str] = []
    cipher.client.meta.events.register("before-call.kms.*", lambda model, **_: calls.append(model.name))
    return calls


def test_round_trip_with_a_data_key_per_block(key_id, store):
    cipher = KmsBlockCipher(key_id, store)
    first, second = cipher.encrypt({"secret": "s3cr3t"}), cipher.encrypt({"secret": "s3cr3t"})
    assert first.startswith("kms1:") and first != second and "s3cr3t" not in first
    assert first.split(":")[1] != second.split(":")[1]  # a fresh data key each time
    other_container = KmsBlockCipher(key_id, store)
    calls = counting(other_container)
    assert other_container.decrypt(first) == {"secret": "s3cr3t"}
    assert other_container.decrypt(first) == {"secret": "s3cr3t"}
    assert calls == ["Decrypt"]  # the data key is decrypted once, then cached


def test_every_container_derives_the_same_signing_secret(key_id, store):
    one, two = KmsBlockCipher(key_id, store), KmsBlockCipher(key_id, store)
    assert one.derive_key("run-tokens") == two.derive_key("run-tokens")
    assert one.derive_key("run-tokens") != one.derive_key("other")
    assert store.get_meta("signing_key") is not None


def test_damaged_or_foreign_ciphertext_is_a_clear_error(key_id, store):
    cipher = KmsBlockCipher(key_id, store)
    token = cipher.encrypt({"a": 1})
    blob, sealed = token.removeprefix("kms1:").split(":")
    with pytest.raises(ConfigurationError, match="damaged"):
        cipher.decrypt(f"kms1:{blob}:{sealed[:-4]}AAAA")
    fernet = BlockCipher(Fernet.generate_key().decode())
    with pytest.raises(ConfigurationError, match="not encrypted with KMS"):
        cipher.decrypt(fernet.encrypt({"a": 1}))


def test_a_key_the_control_plane_may_not_use_names_the_permissions(aws, store):
    cipher = KmsBlockCipher("arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000", store)
    with pytest.raises(ConfigurationError, match="kms:GenerateDataKey and kms:Decrypt"):
        cipher.encrypt({"a": 1})


def test_a_fresh_container_makes_one_signing_key_when_many_threads_ask_at_once(key_id, store):
    """The dispatcher submits runs from a pool of threads, each issuing a run token: on a fresh container they
    all want the signing key at once. One KMS call makes it; the others wait for it."""
    from concurrent.futures import ThreadPoolExecutor

    cipher = KmsBlockCipher(key_id, store)
    calls = counting(cipher)
    original = cipher._kms

    def slow_kms(operation, **kwargs):  # widen the window in which the other threads arrive
        import time

        time.sleep(0.2)
        return original(operation, **kwargs)

    cipher._kms = slow_kms
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: cipher.derive_key("run-tokens"), range(8)))
    assert len(secrets) == 1 and calls == ["GenerateDataKey", "Decrypt"]
