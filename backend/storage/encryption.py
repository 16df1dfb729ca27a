"""Encryption at rest for secrets and cached mail fields (AES-256-GCM, `cryptography`).

MSSanté requires stored secrets to be encrypted; we also encrypt every cached field that
could identify a patient or a correspondent. Each value gets a fresh 96-bit nonce, and the
column name is bound as associated data so a ciphertext cannot be moved to another column.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

_VERSION = b"\x01"
_cipher: AESGCM | None = None
_digest_key: bytes | None = None


class DataKeyError(RuntimeError):
    """Stored data cannot be decrypted: wrong ESTAFETTE_DATA_KEY, or tampered data."""


def set_data_key(key: bytes) -> None:
    """Install the process-wide data key; a process serves one establishment with one key."""
    global _cipher, _digest_key
    _cipher = AESGCM(key)
    _digest_key = hmac.new(key, b"estafette lookup digest", hashlib.sha256).digest()


def lookup_digest(value: str, context: str) -> str:
    """A keyed, deterministic digest of an encrypted value, so it can be looked up by equality.

    Why: encrypted columns cannot be searched (fresh nonce each time); an HMAC under a key
    derived from the data key can, without revealing the value to whoever reads the table.
    """
    if _digest_key is None:
        raise DataKeyError("the data key is not configured (call set_data_key first)")
    mac = hmac.new(_digest_key, context.encode() + b"\x00" + value.encode(), hashlib.sha256)
    return mac.hexdigest()


def _require_cipher() -> AESGCM:
    if _cipher is None:
        raise DataKeyError("the data key is not configured (call set_data_key first)")
    return _cipher


def encrypt(plaintext: bytes, context: bytes) -> bytes:
    """Seal `plaintext`; `context` must be given again to open it."""
    nonce = os.urandom(12)
    return _VERSION + nonce + _require_cipher().encrypt(nonce, plaintext, context)


def decrypt(sealed: bytes, context: bytes) -> bytes:
    """Open a value sealed by `encrypt` with the same context."""
    if not sealed or sealed[:1] != _VERSION:
        raise DataKeyError("unknown ciphertext format")
    try:
        return _require_cipher().decrypt(sealed[1:13], sealed[13:], context)
    except InvalidTag as exc:
        raise DataKeyError("stored data does not match ESTAFETTE_DATA_KEY") from exc


class EncryptedBytes(TypeDecorator):
    """A column whose bytes are sealed with the data key."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context.encode()

    def process_bind_param(self, value: bytes | None, dialect: Any) -> bytes | None:
        return None if value is None else encrypt(value, self.context)

    def process_result_value(self, value: bytes | None, dialect: Any) -> bytes | None:
        return None if value is None else decrypt(bytes(value), self.context)


class EncryptedText(EncryptedBytes):
    """A text column sealed with the data key."""

    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> bytes | None:
        return super().process_bind_param(None if value is None else value.encode(), dialect)

    def process_result_value(self, value: bytes | None, dialect: Any) -> str | None:
        raw = super().process_result_value(value, dialect)
        return None if raw is None else raw.decode()


class EncryptedJSON(EncryptedBytes):
    """A JSON document sealed with the data key (address lists, X-MSS headers, patient)."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        if value is None:
            return None
        return super().process_bind_param(json.dumps(value, ensure_ascii=False).encode(), dialect)

    def process_result_value(self, value: bytes | None, dialect: Any) -> Any:
        raw = super().process_result_value(value, dialect)
        return None if raw is None else json.loads(raw)
