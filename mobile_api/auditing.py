"""Every API call leaves an audit record: the one mechanism views use to be traced.

A view names its action under its route decorator, `@audited("message.read",
target_type="message", target="message_id")`, where `target` and `mailbox` name URL
variables. The record is written once the answer is known (after_request), so a call
refused anywhere (someone else's message: 404, a non-admin: 403, a stale second factor:
401, bad input: 422) is traced like a success. The outcome comes from the status, in one
vocabulary: `ok`, `refused` (401, 403, 429), `not_found` (404), `failed` (anything else),
with the problem's stable `code` as a detail. Views add ids and counts with `note()`, and
one record per further object they disclose with `also()`.

Records hold ids, actions and counts, never content or query text; an id from the URL
that does not look like one of ours is left out. Calls with no verified caller (no token,
a bad one) are not traced: nobody was given access, nginx logs them, and recording them
would let anyone grow the trail. What is not audited here, and why, is in `NOT_AUDITED`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Flask, Response, g, request

from backend.audit.trail import Outcome
from mobile_api.context import services

OK, REFUSED, NOT_FOUND, FAILED = Outcome.OK, Outcome.REFUSED, Outcome.NOT_FOUND, Outcome.FAILED
OUTCOMES = tuple(Outcome)

# Endpoints (or blueprints, ending in ".") left to other mechanisms, with the reason.
NOT_AUDITED = {
    "auth.methods": "the list of sign-in providers: public, the same for everyone",
    "auth.": "sign-in steps record themselves (auth.*, session.*): the caller is only known "
    "halfway through, and refusals and lockouts carry their own reason",
    "oidc.": "OpenID Connect sign-in steps record themselves (auth.oidc_*, auth.session_open, "
    "auth.backchannel_logout), as the other sign-in steps do",
    "ops.": "health probes and /metrics: no user, no data, called every few seconds",
    "api-docs.": "the OpenAPI document: public, the same for everyone",
    "api_browser.": "the API browser's page and files: public, the same for everyone",
    "static": "Flask's static route: nothing is served from it",
    "web_client.": "the web client's files: public, the same for everyone, no user data",
}

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _as_id(value: Any) -> str | None:
    """An id the caller sent, if it looks like one: never free text into the trail."""
    return value if isinstance(value, str) and _ID.match(value) else None


@dataclass(frozen=True)
class AuditSpec:
    action: str
    target_type: str | None = None
    target: str | None = None
    mailbox: str | None = None


@dataclass
class _Entry:
    action: str
    target_type: str | None = None
    target: str | None = None
    mailbox: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pending:
    main: _Entry
    more: list[_Entry] = field(default_factory=list)
    main_recorded: bool = False  # in the change's own transaction (admin changes)


def audited(
    action: str,
    *,
    target_type: str | None = None,
    target: str | None = None,
    mailbox: str | None = None,
) -> Callable[[Callable], Callable]:
    """Trace every call of this view; put it right under the route decorator."""
    spec = AuditSpec(action, target_type, target, mailbox)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.audit = _Pending(
                _Entry(
                    action,
                    target_type,
                    _as_id(kwargs.get(target)) if target else None,
                    _as_id(kwargs.get(mailbox)) if mailbox else None,
                )
            )
            return view(*args, **kwargs)

        wrapper.audit_spec = spec  # type: ignore[attr-defined]
        return wrapper

    return decorate


def note(
    *,
    action: str | None = None,
    target_type: str | None = None,
    target: str | None = None,
    mailbox: str | None = None,
    details: dict[str, Any] | None = None,
    **more: Any,
) -> None:
    """Complete this call's record: what the view learnt (the mailbox, a new id, counts).

    Details come as keywords, or as `details` when a key is one of this function's names.
    """
    pending: _Pending | None = g.get("audit")
    if pending is None:
        raise RuntimeError(f"{request.endpoint} is not @audited")
    entry = pending.main
    entry.action = action or entry.action
    entry.target_type = target_type or entry.target_type
    entry.target = target or entry.target
    entry.mailbox = mailbox or entry.mailbox
    entry.details.update(details or {}, **more)


def recorded() -> None:
    """This call's record was written with its change (mobile_api.admin.commit_change)."""
    pending: _Pending = g.audit
    pending.main_recorded = True


def also(
    action: str,
    *,
    target_type: str | None = None,
    target: str | None = None,
    mailbox: str | None = None,
    **details: Any,
) -> None:
    """One more record for this call, for another object it disclosed (same outcome)."""
    pending: _Pending = g.audit
    pending.more.append(_Entry(action, target_type, target, mailbox, details))


def outcome_of(status: int) -> Outcome:
    if status < 400:
        return OK
    if status in (401, 403, 429):
        return REFUSED
    if status == 404:
        return NOT_FOUND
    return FAILED


def _problem_code(response: Response) -> str | None:
    if response.mimetype != "application/problem+json":
        return None
    body = response.get_json(silent=True) or {}
    return _as_id(body.get("code"))


def _write(response: Response) -> Response:
    pending: _Pending | None = g.pop("audit", None)  # popped: written once, whatever follows
    actor = g.get("actor")
    if pending is None or actor is None:
        return response
    session = g.get("db")
    if session is not None:
        # The writer has its own transaction; ours ends first (on SQLite two writers wait on
        # each other), and whatever a failed call left uncommitted is not kept.
        session.rollback()
    outcome = outcome_of(response.status_code)
    code = _problem_code(response) if outcome != OK else None
    entries = pending.more if pending.main_recorded else [pending.main, *pending.more]
    trail = services().audit
    records = []
    for entry in entries:
        details = dict(entry.details)
        if code:
            details["code"] = code
        records.append(
            trail.entry(
                entry.action,
                actor=actor,
                outcome=outcome,
                target_type=entry.target_type,
                target=entry.target,
                mailbox=entry.mailbox,
                details=details or None,
            )
        )
    trail.append(records)  # the call's records together, committed before the answer leaves
    return response


def unaudited_endpoints(app: Flask) -> list[str]:
    """Endpoints with neither `@audited` nor a reason in NOT_AUDITED: must be empty."""
    missing = []
    for endpoint, view in app.view_functions.items():
        if any(endpoint.startswith(prefix) for prefix in NOT_AUDITED):
            continue
        if getattr(view, "audit_spec", None) is None:
            missing.append(endpoint)
    return sorted(missing)


def init_auditing(app: Flask) -> None:
    """Write each call's records after its answer; refuse to start with an untraced view."""
    missing = unaudited_endpoints(app)
    if missing:
        raise RuntimeError(f"API views without an audit action: {', '.join(missing)}")
    app.after_request(_write)
