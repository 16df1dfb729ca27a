"""Opaque keyset cursors: clients page with `limit` and `cursor`, never with offsets.

Cursors are sealed with the data key: they hide internal keys and cannot be forged.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from marshmallow import Schema, fields, validate

from backend import errors
from backend.storage.encryption import DataKeyError, decrypt, encrypt

MAX_LIMIT = 200


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=512))


def encode_cursor(*values: Any) -> str:
    sealed = encrypt(json.dumps(values).encode(), b"cursor")
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    """Decode a cursor we issued; anything else is a `validation_error` on `cursor`."""
    if cursor is None:
        return None
    try:
        sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(decrypt(sealed, b"cursor"))
    except (ValueError, DataKeyError):
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise errors.ValidationFailed({"cursor": ["Not a cursor this server issued."]})
    return values
