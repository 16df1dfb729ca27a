"""JSON bodies no view can use, refused before any view runs (400/422, never a 500).

The standard `json` module recurses once per nesting level, so thousands of `[` raise
RecursionError (not ValueError) inside webargs; and JSON may escape a lone surrogate
(`"\\ud800"`) that no database, hash or mail can encode. Our bodies are a few levels
deep: anything deeper is refused outright.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

from mobile_api.errors import problem

MAX_DEPTH = 32


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_problem(document: Any) -> tuple[str | None, bool]:
    """(top-level field holding a lone surrogate, too deep?), walked without recursion."""
    stack: list[tuple[Any, int, str]] = [(document, 0, "_schema")]
    while stack:
        value, depth, field = stack.pop()
        if depth > MAX_DEPTH:
            return None, True
        if isinstance(value, str) and not _encodable(value):
            return field, False
        if isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return field, False
                stack.append((item, depth + 1, key if depth == 0 else field))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, field) for item in value)
    return None, False


def refuse_unusable_json() -> Response | None:
    """before_request: too deep is 400 `invalid_json`; a lone surrogate is a 422 on its field."""
    if not request.is_json:
        return None
    data = request.get_data(cache=True)
    if not data:
        return None
    try:
        field, too_deep = _first_problem(json.loads(data))
    except RecursionError:
        field, too_deep = None, True
    except ValueError:
        return None  # webargs answers malformed JSON with its own 400
    if too_deep:
        return problem(
            400, "invalid_json", "The body is not valid JSON", "The JSON is nested too deeply"
        )
    if field is not None:
        return problem(
            422,
            "validation_error",
            "The request is not valid",
            "One or more fields are not valid",
            errors={field: ["Not valid Unicode text."]},
        )
    return None


def init_json_checks(app: Flask) -> None:
    app.before_request(refuse_unusable_json)
