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
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

_VERSION = b"\x01"
_cipher: AESGCM | None = None
_digest_key: bytes | None = None

T = TypeVar("T")


class DataKeyError(RuntimeError):
    """Stored data cannot be decrypted: wrong ESTAFETTE_DATA_KEY, or tampered data."""


def set_data_key(key: bytes) -> None:
    """Install the process-wide data key; a process serves one establishment with one key."""
    global _cipher, _digest_key
    _cipher = AESGCM(key)
    _digest_key = hmac.new(key, b"estafette lookup digest", hashlib.sha256).digest()


def has_data_key() -> bool:
    """Whether `set_data_key` ran in this process (the migrations load it otherwise)."""
    return _cipher is not None


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
        raise DataKeyError(
            "stored data does not open: another ESTAFETTE_DATA_KEY sealed it, or it was "
            "moved from another row or column"
        ) from exc


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
        return json.loads(raw)
