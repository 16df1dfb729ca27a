"""Every failure becomes RFC 9457 problem+json with a stable `code`: the one error handler.

Domain errors, werkzeug's HTTP errors (404, 405, 413, bad JSON), webargs validation,
flask-jwt-extended's token errors and anything unexpected all leave through `problem()`.
A client never sees HTML or a stack trace.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, json, request
from flask_smorest import Blueprint
from marshmallow import INCLUDE, Schema, fields
from sqlalchemy.exc import DataError, DBAPIError
from werkzeug.exceptions import HTTPException

from backend import errors
from backend.storage.encryption import DataKeyError

log = logging.getLogger("estafette.api")

PROBLEM_JSON = "application/problem+json"

_STATUS_BY_ERROR: dict[type[errors.EstafetteError], int] = {
    errors.NotFound: 404,
    errors.Forbidden: 403,
    errors.FreshMfaRequired: 401,
    errors.InvalidCredentials: 401,
    errors.OtpInvalid: 401,
    errors.OtpReplayed: 401,
    errors.OtpNotEnrolled: 403,
    errors.Locked: 429,
    errors.TokenRevoked: 401,
    errors.CredentialsChanged: 401,
    errors.SessionExpired: 401,
    errors.CertificateRejected: 401,
    errors.CardRevoked: 401,
    errors.CardRevocationUnknown: 401,
    errors.ValidationFailed: 422,
    errors.UnsafeHeader: 422,
    errors.Conflict: 409,
    errors.RecipientOutsideTrustSpace: 422,
    errors.RecipientNotInDirectory: 422,
    errors.PayloadTooLarge: 413,
    errors.MailboxUnavailable: 503,
    errors.WebPushUnavailable: 503,
    errors.NoPushToken: 409,
    errors.PushServiceNotAllowed: 422,
    errors.CannotCalculateChanges: 400,
    errors.SearchUnsupported: 400,
    errors.SendFailed: 502,
    errors.RecipientsPartiallyRefused: 502,
    errors.ArchiveRejected: 422,
    errors.OidcProviderUnknown: 404,
    errors.RedirectUriNotAllowed: 400,
    errors.OidcStateInvalid: 400,
    errors.OidcProviderFailed: 502,
    errors.OidcTokenRejected: 401,
    errors.OidcSignatureInvalid: 401,
    errors.OidcTokenExpired: 401,
    errors.OidcAudienceMismatch: 401,
    errors.OidcIssuerMismatch: 401,
    errors.OidcNonceMismatch: 401,
    errors.OidcAcrInsufficient: 401,
    errors.OidcCodeInvalid: 401,
    errors.PkceMismatch: 401,
    errors.AccountNotProvisioned: 403,
    errors.OidcIdentityTaken: 409,
    errors.LogoutTokenRejected: 400,
    errors.DirectoryUnavailable: 502,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


# Codes served by the HTTP layer itself rather than by a domain error.
TOKEN_CODES = ("unauthorized", "token_invalid", "token_expired", "token_revoked")
_HTTP_LAYER_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_json", "invalid_value"),
    401: (*TOKEN_CODES, "fresh_auth_required"),
    500: ("internal_error", "sealed_value_rejected"),
}


def problem_codes() -> dict[int, list[str]]:
    """Every `code` the API can answer, by HTTP status: the OpenAPI document enumerates them.

    Derived from the domain errors and the status table above, so a new error class is
    documented the moment it exists.
    """
    by_status: dict[int, set[str]] = {}
    pending = list(errors.EstafetteError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        by_status.setdefault(_STATUS_BY_ERROR.get(cls, 400), set()).add(cls.code)
    for status, code in _CODE_BY_STATUS.items():
        by_status.setdefault(status, set()).add(code)
    for status, codes in _HTTP_LAYER_CODES.items():
        by_status.setdefault(status, set()).update(codes)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def problem(
    status: int, code: str, title: str, detail: str | None = None, **extra: Any
) -> Response:
    """Build the problem+json response; `extra` adds members such as per-field `errors`."""
    body = {"type": "about:blank", "status": status, "title": title, "code": code}
    if detail:
        body["detail"] = detail
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    return response


def _from_domain(exc: errors.EstafetteError) -> Response:
    status = _STATUS_BY_ERROR.get(type(exc), 400)
    response = problem(status, exc.code, exc.title, exc.detail, **exc.extra)
    if isinstance(exc, errors.Locked):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _field_errors(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location (json, query, files); clients want fields."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    merged: dict[str, Any] = {}
    for location_errors in messages.values():
        if isinstance(location_errors, dict):
            # A multipart part may have no name at all: keys must stay sortable strings.
            merged.update(
                {
                    "_schema" if key is None else str(key): value
                    for key, value in location_errors.items()
                }
            )
        else:
            merged.setdefault("_schema", location_errors)
    return merged


def _from_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if status == 422:
        return problem(
            422,
            "validation_error",
            "The request is not valid",
            "One or more fields are not valid",
            errors=_field_errors(data.get("messages", {})),
        )
    if status == 400 and "messages" in data:
        return problem(400, "invalid_json", "The body is not valid JSON", "Send a JSON object")
    code = _CODE_BY_STATUS.get(status, "http_error")
    response = problem(status, code, exc.name, exc.description)
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    if status == 429 and getattr(exc, "retry_after", None):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _bad_value(exc: DataError) -> Response:
    """A value the database cannot take (PostgreSQL: a NUL character, a number too large).

    SQLite stores what PostgreSQL refuses, so schemas cannot catch all of it up front.
    """
    _log_database_error(exc, logging.WARNING)
    return problem(
        400,
        "invalid_value",
        "A value cannot be accepted",
        "A field holds a character or a number that cannot be stored (a NUL character?)",
    )


def _sealed_value_rejected(exc: DataKeyError) -> Response:
    """A sealed value that does not open for its row: a wrong data key, or tampering.

    An integrity alarm for the operators, not a bug: logged as such, without a traceback.
    """
    log.error("sealed value rejected on %s %s: %s", request.method, request.path, exc)
    return problem(
        500,
        "sealed_value_rejected",
        "Stored data cannot be opened",
        "A stored value does not open with the data key for its row; operators were alerted",
    )


def _unexpected(exc: Exception) -> Response:
    # The traceback goes to the log for operators; the client gets a plain 500.
    if isinstance(exc, DBAPIError):
        _log_database_error(exc, logging.ERROR)
    else:
        log.error(
            "unhandled %s on %s %s", type(exc).__name__, request.method, request.path, exc_info=exc
        )
    return problem(500, "internal_error", "Internal error", "The error was logged")


def _log_database_error(exc: DBAPIError, level: int) -> None:
    """Where it failed, never what was in it: driver messages quote values (DETAIL: Key …)."""
    log.log(
        level,
        "database %s (SQLSTATE %s) on %s %s\n%s",
        type(exc.orig).__name__,
        getattr(exc.orig, "sqlstate", None),
        request.method,
        request.path,
        "".join(traceback.format_tb(exc.__traceback__)),
    )


def register_error_handlers(app: Flask) -> None:
    """Route every error class to problem+json."""
    app.register_error_handler(errors.EstafetteError, _from_domain)
    app.register_error_handler(HTTPException, _from_http)
    app.register_error_handler(DataError, _bad_value)
    app.register_error_handler(DataKeyError, _sealed_value_rejected)
    app.register_error_handler(Exception, _unexpected)


def documented_problems(
    blueprint: Blueprint, answers: dict[int, str]
) -> Callable[[Callable], Callable]:
    """Document the problem+json answers a call may give (OpenAPI, schemathesis)."""

    def decorate(view: Callable) -> Callable:
        for status, description in answers.items():
            view = blueprint.alt_response(
                status, schema=ProblemSchema, content_type=PROBLEM_JSON, description=description
            )(view)
        return view

    return decorate


class ProblemSchema(Schema):
    """RFC 9457 problem details as served, so the OpenAPI document describes error bodies.

    Extension members (RFC 9457 §3.2) may follow, hence `INCLUDE`.
    """

    class Meta:
        unknown = INCLUDE

    type = fields.String(metadata={"description": "Always `about:blank`: `code` names it."})
    status = fields.Integer(required=True, metadata={"description": "The HTTP status."})
    title = fields.String(required=True, metadata={"description": "A short summary, for logs."})
    detail = fields.String(metadata={"description": "What happened, for logs, not for users."})
    code = fields.String(
        required=True,
        metadata={"description": "The stable machine code: each answer lists its codes."},
    )
    errors = fields.Dict(metadata={"description": "Validation errors: messages by field."})
