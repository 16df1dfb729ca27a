"""Hot answers dumped by a function compiled once from their marshmallow schema, then orjson.

The schemas stay the contract and the OpenAPI source; `schema.dump` walks every field
of every envelope through generic machinery at each call, which on a page of 50 envelopes
costs more than the query. `compile_dump` reads the schema once and returns a plain
function with the same result for the dicts the views build (tests/api/
test_compiled_dump.py holds both to the same JSON): fields the fast path does not know
are dumped by the field's own marshmallow serializer, and a schema it cannot follow
(dump hooks, dump defaults) is refused when the app starts rather than dumped differently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from flask import Response
from marshmallow import Schema, fields
from marshmallow.utils import missing

_ABSENT = object()
Dump = Callable[[Any], Any]


def compile_dump(schema: Schema) -> Dump:
    """A function giving `schema.dump(value)` for a dict (or list of dicts, `many`)."""
    if any(schema._hooks.values()):  # no public way to ask for hooks
        raise TypeError(f"{type(schema).__name__} has hooks: dump it with marshmallow")
    plan = [
        (field.attribute or name, field.data_key or name, _converter(field))
        for name, field in schema.dump_fields.items()
    ]

    def dump_one(value: Any) -> dict[str, Any]:
        out = {}
        for attribute, key, convert in plan:
            item = value.get(attribute, _ABSENT)
            if item is _ABSENT:
                continue
            out[key] = None if item is None else convert(item)
        return out

    if schema.many:
        return lambda values: [dump_one(value) for value in values]
    return dump_one


def _converter(field: fields.Field) -> Dump:
    """How one field's non-None value is dumped."""
    if field.dump_default is not missing:
        raise TypeError(f"{field.name}: dump defaults are left to marshmallow")
    if isinstance(field, fields.Nested):
        inner = compile_dump(field.schema)
        if field.many and not field.schema.many:
            return lambda values: [None if v is None else inner(v) for v in values]
        return inner
    if isinstance(field, fields.List):
        item = _converter(field.inner)
        return lambda values: [None if v is None else item(v) for v in values]
    serialize = field._serialize  # marshmallow's own, for anything else
    if isinstance(field, fields.DateTime) and (field.format or "iso") in ("iso", "iso8601"):
        return lambda v: v.isoformat() if type(v) is datetime else serialize(v, None, None)
    for kind, python_type in (
        (fields.Boolean, bool),
        (fields.String, str),
        (fields.Integer, int),
    ):
        if type(field) is kind:
            return lambda v, t=python_type: v if type(v) is t else serialize(v, None, None)
    return lambda v: serialize(v, None, None)


def json_response(data: Any) -> Response:
    """`data` (already dumped) as the same JSON Flask's provider writes: keys sorted.

    Text is UTF-8 rather than \\u-escaped, which is the same JSON value."""
    return Response(
        orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE),
        mimetype="application/json",
    )
