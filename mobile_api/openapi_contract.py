"""What each call of the OpenAPI document requires and how it can fail, read off its view.

Written once, as an apispec plugin, so that a call added anywhere is documented like the
others: its security (none, the mfa token, a session, the refresh token) comes from the
decorator that guards it (`mobile_api.auth.tokens.CREDENTIAL_ATTRIBUTE`), and its problem
answers from what the view takes: a token can be refused (401, 403), a path id can name
nothing (404), a body can be malformed, too large or invalid (400, 413, 422), a rate limit
can answer 429. A view adds its own (409, 503, ...) with `documented_problems`; the codes
named in backticks in that description are the ones enumerated for 401, 404, 413 and 429;
for the statuses any view's domain errors can answer (400, 403, 409, 422, 503), every code
of the status is. Each answer lists its problem `code` values as an enum for client generators.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask
from flask_limiter.util import get_qualified_name

from mobile_api.auth.tokens import CREDENTIAL_ATTRIBUTE
from mobile_api.errors import PROBLEM_JSON, TOKEN_CODES, problem_codes
from mobile_api.limits import limiter

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The 10-minute access token of a signed-in device session.",
    },
    "mfaToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The 5-minute `mfa_token` from `POST /auth/login`, for the second factor.",
    },
    "refreshToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The session's single-use refresh token.",
    },
}
_SECURITY: dict[str | None, list[dict[str, list]]] = {
    None: [],
    "mfa": [{"mfaToken": []}],
    "session": [{"bearer": []}],
    "admin": [{"bearer": []}],
    "refresh": [{"refreshToken": []}],
}
_UNAUTHORIZED: dict[str, tuple[str, ...]] = {
    "mfa": (*TOKEN_CODES, "credentials_changed"),
    "session": (*TOKEN_CODES, "credentials_changed", "session_expired"),
    "refresh": (*TOKEN_CODES, "credentials_changed", "session_expired"),
    "admin": (*TOKEN_CODES, "credentials_changed", "session_expired", "fresh_mfa_required"),
}
_DESCRIPTIONS = {
    400: "The body is not JSON, or holds a value that cannot be stored.",
    401: "No token, or one that is invalid, expired or revoked: refresh or sign in.",
    403: "The token does not open this call.",
    404: "No such object, or not one of yours (never 403, so ids cannot be probed).",
    409: "Conflicts with the current state.",
    413: "The body is too large.",
    422: "A field is not valid: `errors` names each one.",
    429: "Too many requests: wait `Retry-After` seconds.",
    503: "A service the call needs is unavailable: retry later.",
}
# Statuses a view's own domain errors answer (a refused value, a conflict, a server away):
# listing every code of the status keeps the enum true for calls that do not declare them.
_RAISED_BY_ANY_VIEW = frozenset({400, 403, 409, 422, 503})
_BACKTICKED = re.compile(r"`([a-z0-9_]+)`")


class CallContract(BasePlugin):
    """Fill each operation's `security` and problem responses from its view."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        view = self._app.view_functions.get(rule.endpoint)
        credential = getattr(view, CREDENTIAL_ATTRIBUTE, None)
        limited = view is not None and bool(
            limiter.limit_manager.decorated_limits(get_qualified_name(view))
        )
        all_codes = problem_codes()
        for method, operation in operations.items():
            operation["security"] = _SECURITY[credential]
            implied = _implied_codes(credential, operation, method, rule.arguments, limited)
            responses = operation.setdefault("responses", {})
            for status, codes in implied.items():
                declared = responses.get(str(status), responses.get(status))
                if declared is None or not _is_problem(declared):
                    responses[str(status)] = _problem_response(_DESCRIPTIONS[status], codes)
            for key, answer in list(responses.items()):
                if key == "default" or not _is_problem(answer):
                    continue
                status = int(key)
                described = isinstance(answer, dict) and answer.get("description")
                named = [
                    c
                    for c in _BACKTICKED.findall(described or "")
                    if c in all_codes.get(status, ())
                ]
                codes = sorted({*implied.get(status, ()), *named})
                if status in _RAISED_BY_ANY_VIEW or not codes:
                    codes = all_codes.get(status, [])
                responses[key] = _problem_response(
                    described or _DESCRIPTIONS.get(status, "Refused"), codes
                )


def _implied_codes(
    credential: str | None, operation: dict, method: str, path_args: set[str], limited: bool
) -> dict[int, list[str]]:
    """The problems any view of this shape can answer, by status."""
    implied: dict[int, list[str]] = {}
    if credential is not None:
        implied[401] = list(_UNAUTHORIZED[credential])
        implied[403] = ["forbidden"]
    if path_args:
        implied[404] = ["not_found"]
    has_body = "requestBody" in operation
    if has_body:
        implied[400] = ["invalid_json", "invalid_value"]
        implied[413] = ["payload_too_large"]
    if has_body or any(p.get("in") == "query" for p in _parameters(operation)):
        implied[422] = ["validation_error"]
    if limited:
        implied[429] = ["rate_limited"]
    return implied


def _parameters(operation: dict) -> list[dict]:
    return [p for p in operation.get("parameters", []) if isinstance(p, dict)]


def _is_problem(answer: Any) -> bool:
    """flask-smorest's own error answers are references; ours carry problem+json."""
    if isinstance(answer, str):
        return True
    if "$ref" in answer:
        return True
    return PROBLEM_JSON in answer.get("content", {})


def _problem_response(description: str, codes: list[str]) -> dict:
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Problem"}
    if codes:
        schema = {
            "allOf": [schema],
            "properties": {"code": {"type": "string", "enum": sorted(set(codes))}},
        }
    return {"description": description, "content": {PROBLEM_JSON: {"schema": schema}}}


def nullable_choice_as_named_enum(converter: Any, field: Any, ret: dict, **kwargs: Any) -> dict:
    """A nullable choice (`type: [string, null]` with `enum: [..., null]`) becomes a named
    enum or null, so generators write `FolderRole | None`, not `FolderRoleType2Type1`.

    A marshmallow-plugin attribute function: it runs after the built-in ones and rewrites
    their output in place.
    """
    kinds = ret.get("type")
    if not (isinstance(kinds, list) and "null" in kinds and "enum" in ret):
        return {}
    owner = type(field.parent).__name__.removesuffix("Schema")
    name = owner + "".join(part.title() for part in (field.name or "").split("_"))
    choices = [choice for choice in ret.pop("enum") if choice is not None]
    (kind,) = [k for k in ret.pop("type") if k != "null"]
    if name not in converter.spec.components.schemas:
        described = {"description": ret["description"]} if "description" in ret else {}
        converter.spec.components.schema(name, {"type": kind, "enum": choices, **described})
    ret["anyOf"] = [{"$ref": f"#/components/schemas/{name}"}, {"type": "null"}]
    return {}
