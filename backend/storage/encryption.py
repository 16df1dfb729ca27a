"""Encryption at rest for secrets and cached mail fields (AES-256-GCM, `cryptography`).

MSSanté requires stored secrets to be encrypted; we also encrypt every cached field that
could identify a patient or a correspondent, and the devices' push tokens. Each value gets a
fresh 96-bit nonce, and its column AND its row (the row's public id) are bound as associated
data: a ciphertext copied into another row or another column does not open, it raises
`DataKeyError`, so whoever can write the tables cannot swap one user's secret for another's.

A model declares a sealed field as a private `SealedColumn` (what the database holds) and a
public `Sealed*` descriptor of the same name without the underscore (what the code reads and
writes). The row's public id is set when the object is built (`models.Base.__init__`), so a
value is sealed the moment it is assigned, with no second write after the INSERT.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

# Formats: 1 = nonce + ciphertext (before key rotation: sealed with the one data key);
# 2 = key id length + key id + nonce + ciphertext (the key id names its ring key).
_V1 = b"\x01"
_V2 = b"\x02"
_ring: dict[str, AESGCM] = {}
_current: str | None = None
_digest_key: bytes | None = None

T = TypeVar("T")


class DataKeyError(RuntimeError):
    """Stored data cannot be decrypted: wrong ESTAFETTE_DATA_KEY, or tampered data."""


def set_data_keys(ring: Sequence[tuple[str, bytes]]) -> None:
    """Install the process-wide keyring (ESTAFETTE_DATA_KEYS): the first key seals, every
    key opens what it sealed. A process serves one establishment with one ring."""
    global _ring, _current, _digest_key
    if not ring:
        raise DataKeyError("the data keyring is empty")
    _ring = {key_id: AESGCM(key) for key_id, key in ring}
    _current = ring[0][0]
    _digest_key = hmac.new(ring[0][1], b"estafette lookup digest", hashlib.sha256).digest()


def set_data_key(key: bytes) -> None:
    """Install a one-key ring (ESTAFETTE_DATA_KEY alone)."""
    set_data_keys([("default", key)])


def has_data_key() -> bool:
    """Whether `set_data_key(s)` ran in this process (the migrations load it otherwise)."""
    return _current is not None


def current_key_id() -> str:
    if _current is None:
        raise DataKeyError("the data key is not configured (call set_data_key first)")
    return _current


def lookup_digest(value: str, context: str) -> str:
    """A keyed, deterministic digest of an encrypted value, so it can be looked up by equality.

    Why: encrypted columns cannot be searched (fresh nonce each time); an HMAC under a key
    derived from the current data key can, without revealing the value to whoever reads the
    table. A key rotation recomputes the digests it can (`backend.storage.key_rotation`).
    """
    if _digest_key is None:
        raise DataKeyError("the data key is not configured (call set_data_key first)")
    mac = hmac.new(_digest_key, context.encode() + b"\x00" + value.encode(), hashlib.sha256)
    return mac.hexdigest()


def encrypt(plaintext: bytes, context: bytes) -> bytes:
    """Seal `plaintext` under the current key; `context` must be given again to open it."""
    key_id = current_key_id()
    nonce = os.urandom(12)
    name = key_id.encode()
    return (
        _V2 + bytes([len(name)]) + name + nonce + _ring[key_id].encrypt(nonce, plaintext, context)
    )


def key_id_of(sealed: bytes) -> str | None:
    """The id of the key that sealed this value; None for a value from before key ids."""
    if sealed[:1] == _V2 and len(sealed) > 2:
        return sealed[2 : 2 + sealed[1]].decode(errors="replace")
    return None


def decrypt(sealed: bytes, context: bytes) -> bytes:
    """Open a value sealed by `encrypt` with the same context, with the key it names."""
    if not sealed or sealed[:1] not in (_V1, _V2):
        raise DataKeyError("unknown ciphertext format")
    if not _ring:
        raise DataKeyError("the data key is not configured (call set_data_key first)")
    if sealed[:1] == _V2:
        key_id = key_id_of(sealed) or ""
        if key_id not in _ring:
            raise DataKeyError(f"stored data was sealed with key {key_id!r}, not in the keyring")
        body = sealed[2 + sealed[1] :]
        candidates = [_ring[key_id]]
    else:
        # Sealed before key ids: by whichever key was ESTAFETTE_DATA_KEY then.
        body = sealed[1:]
        candidates = list(_ring.values())
    for cipher in candidates:
        try:
            return cipher.decrypt(body[:12], body[12:], context)
        except InvalidTag:
            continue
    raise DataKeyError(
        "stored data does not open: another ESTAFETTE_DATA_KEY sealed it, or it was "
        "moved from another row or column"
    )


def row_context(column: str, row_id: str) -> bytes:
    """The associated data of a sealed column value: its column and its row's public id."""
    return f"{column}|{row_id}".encode()


class Sealed(bytes):
    """Ciphertext made by a `Sealed*` field for one row: the only value a sealed column takes."""


class SealedColumn(TypeDecorator):
    """The stored side of a sealed field: opaque bytes, written only as `Sealed` values.

    Why the check: a Core `update(...).values(field=plaintext)` or a raw copy of another
    row's ciphertext would otherwise reach the table; NULL (forgetting a value) is allowed.
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        if value is not None and not isinstance(value, Sealed):
            raise TypeError("a sealed column takes only values sealed for its row (Sealed*.seal)")
        return None if value is None else bytes(value)

    def process_result_value(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else bytes(value)


class SealedBytes(Generic[T]):
    """A model attribute sealed into the `SealedColumn` named like it with a leading `_`.

    On an instance it reads and writes the plaintext. On the class it is that column (for
    `is_not(None)`, `defer()`, `values(field=None)`): what a Core query selects from it is
    ciphertext, opened with `open(row public id, value)`.
    """

    def __init__(self, context: str) -> None:
        self.context = context

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.column = f"_{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return getattr(owner, self.column)
        return self.open(obj.public_id, getattr(obj, self.column))

    def __set__(self, obj: Any, value: T | None) -> None:
        setattr(obj, self.column, self.seal(obj.public_id, value))

    def seal(self, row_id: str | None, value: T | None) -> Sealed | None:
        """The ciphertext of `value` for the row whose public id is `row_id`."""
        if value is None:
            return None
        if not row_id:
            raise DataKeyError(f"{self.context} is sealed for its row: set the public id first")
        return Sealed(encrypt(self.encode(value), row_context(self.context, row_id)))

    def open(self, row_id: str, sealed: bytes | None) -> T | None:
        """The plaintext of a value this field sealed for the row `row_id`."""
        if sealed is None:
            return None
        return self.decode(decrypt(sealed, row_context(self.context, row_id)))

    def encode(self, value: Any) -> bytes:
        return bytes(value)

    def decode(self, raw: bytes) -> Any:
        return raw


class SealedText(SealedBytes[str]):
    """A text field sealed for its row."""

    def encode(self, value: str) -> bytes:
        return value.encode()

    def decode(self, raw: bytes) -> str:
        return raw.decode()


class SealedJSON(SealedBytes[Any]):
    """A JSON document sealed for its row (address lists, X-MSS headers, patient).

    A fresh document on every read: change it by assigning, not in place.
    """

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode()

    def decode(self, raw: bytes) -> Any:
        return orjson.loads(raw)  # json.loads' result, in a fifth of the time (pages of 50)
