"""Every operation of the served OpenAPI document leaves an audit record: called by an
authorised user with valid input, and refused (someone else's id, or a non-administrator).

The walk fails when the document gains an operation this file has no call for, so a new
route cannot go untraced. Sign-in (`/auth/*`) records its own steps: checked below too.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.storage.models import AuditRecord
from mobile_api.auditing import NOT_AUDITED, OUTCOMES, outcome_of, unaudited_endpoints
from tests.admin.conftest import SignedIn, sign_in
from tests.factories import create_dovecot_mailbox
from tests.messages.support import Inbox
from tests.support import bearer, body


def _letter() -> bytes:
    message = EmailMessage()
    message["From"] = "Dr Test <test@ch-exemple.mssante.fr>"
    message["To"] = "x@chu-test.mssante.fr"
    message["Subject"] = "Compte rendu"
    message["Disposition-Notification-To"] = "test@ch-exemple.mssante.fr"
    message.set_content("Corps du message.")
    message.add_attachment(
        b"%PDF-1.4 test", maintype="application", subtype="pdf", filename="a.pdf"
    )
    return bytes(message)


@dataclass
class World:
    """A doctor with a real mailbox and a message in it; an administrator; their ids."""

    client: Any
    services: Any
    dovecot: Any
    doctor: SignedIn
    admin: SignedIn
    mailbox_id: str
    message_id: str
    created: dict[str, str]

    def second_admin_device(self) -> str:
        """Another device of the administrator's, to be signed out."""
        tokens = self.admin.authenticator.sign_in(self.client, self.admin.username)
        return tokens["device_id"]


@pytest.fixture
def app(make_app, dovecot) -> Iterator[Any]:
    """The gateway, trusting the test Dovecot's CA."""
    application = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path))
    yield application
    application.extensions["estafette"].engine.dispose()


@pytest.fixture
def world(client, services, dovecot) -> World:
    doctor = sign_in(client, services)
    admin = sign_in(client, services, admin=True)
    address, password, mailbox_id = create_dovecot_mailbox(services, dovecot, owner=doctor.username)
    inbox = Inbox(
        client, services, dovecot, doctor.username, address, password, mailbox_id, doctor.headers
    )
    return World(client, services, dovecot, doctor, admin, mailbox_id, inbox.deliver(_letter()), {})


@dataclass(frozen=True)
class Call:
    """One valid call of an operation: who makes it, on what, with what body."""

    who: str  # "doctor" or "admin"
    path: Callable[[World], str]
    kwargs: Callable[[World], dict] = lambda w: {}
    foreign: Callable[[World], str] | None = None  # the same call on an id not theirs


def _p12() -> dict:
    return {
        "data": {"certificate": (io.BytesIO(b"not a p12"), "c.p12")},
        "content_type": "multipart/form-data",
    }


def _new_user(w: World) -> dict:
    return {"json": {"username": "dr.new", "password": "a long enough password"}}


def _new_mailbox(w: World) -> dict:
    return {
        "json": {
            "address": "secretariat@chu-test.mssante.fr",
            "kind": "ORG",
            "imap": {
                "host": w.dovecot.host,
                "port": w.dovecot.imaps_port,
                "security": "tls",
                "auth": "password",
                "secret": "not checked here",
            },
        }
    }


def _remember(key: str) -> Callable[[World, Any], None]:
    def keep(w: World, response: Any) -> None:
        w.created[key] = body(response)["id"]

    return keep


UNKNOWN = "zzz_not_an_id_of_ours"
WEB_PUSH_SUBSCRIPTION = {
    "endpoint": "https://updates.push.services.mozilla.com/wpush/v2/abc",
    "keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22},
}

# In walking order: what later calls need is created first, deletions come last.
CALLS: dict[tuple[str, str], Call] = {
    ("GET", "/api/v1/mailboxes"): Call("doctor", lambda w: "/api/v1/mailboxes"),
    ("GET", "/api/v1/mailboxes/{mailbox_id}/messages"): Call(
        "doctor",
        lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/messages",
        foreign=lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/messages",
    ),
    ("GET", "/api/v1/mailboxes/{mailbox_id}/folders"): Call(
        "doctor",
        lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/folders",
        foreign=lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/folders",
    ),
    ("PATCH", "/api/v1/mailboxes/{mailbox_id}/folders"): Call(
        "doctor",
        lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/folders",
        lambda w: {"json": {"folder": "INBOX", "watched": None}},
        foreign=lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/folders",
    ),
    ("POST", "/api/v1/mailboxes/{mailbox_id}/drafts"): Call(
        "doctor",
        lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/drafts",
        lambda w: {"json": {"subject": "Brouillon"}},
        foreign=lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/drafts",
    ),
    ("PUT", "/api/v1/drafts/{draft_id}"): Call(
        "doctor",
        lambda w: f"/api/v1/drafts/{w.created['draft']}",
        lambda w: {"json": {"subject": "Brouillon 2"}},
        foreign=lambda w: f"/api/v1/drafts/{w.created['draft']}",
    ),
    ("DELETE", "/api/v1/drafts/{draft_id}"): Call(
        "doctor",
        lambda w: f"/api/v1/drafts/{w.created['draft']}",
        foreign=lambda w: f"/api/v1/drafts/{w.created['draft']}",
    ),
    ("GET", "/api/v1/me/signature"): Call("doctor", lambda w: "/api/v1/me/signature"),
    ("GET", "/api/v1/directory"): Call("doctor", lambda w: "/api/v1/directory?q=martin"),
    ("PUT", "/api/v1/me/signature"): Call(
        "doctor", lambda w: "/api/v1/me/signature", lambda w: {"json": {"text": "Dr X"}}
    ),
    ("GET", "/api/v1/sync"): Call("doctor", lambda w: "/api/v1/sync"),
    ("GET", "/api/v1/me/notifications"): Call("doctor", lambda w: "/api/v1/me/notifications"),
    ("PUT", "/api/v1/me/notifications"): Call(
        "doctor",
        lambda w: "/api/v1/me/notifications",
        lambda w: {"json": {"quiet_hours": None, "on_call": True}},
    ),
    ("GET", "/api/v1/devices"): Call("doctor", lambda w: "/api/v1/devices"),
    ("PUT", "/api/v1/devices/{device_id}/push-token"): Call(
        "doctor",
        lambda w: f"/api/v1/devices/{w.doctor.device_id}/push-token",
        lambda w: {"json": {"push_token": "fcm-token", "platform": "android"}},
        foreign=lambda w: f"/api/v1/devices/{w.doctor.device_id}/push-token",
    ),
    ("GET", "/api/v1/devices/{device_id}/web-push"): Call(
        "doctor",
        lambda w: f"/api/v1/devices/{w.doctor.device_id}/web-push",
        foreign=lambda w: f"/api/v1/devices/{w.doctor.device_id}/web-push",
    ),
    ("PUT", "/api/v1/devices/{device_id}/web-push"): Call(
        "doctor",
        lambda w: f"/api/v1/devices/{w.doctor.device_id}/web-push",
        lambda w: {"json": WEB_PUSH_SUBSCRIPTION},
        foreign=lambda w: f"/api/v1/devices/{w.doctor.device_id}/web-push",
    ),
    ("POST", "/api/v1/devices/{device_id}/test-push"): Call(
        "doctor",
        lambda w: f"/api/v1/devices/{w.doctor.device_id}/test-push",
        foreign=lambda w: f"/api/v1/devices/{w.doctor.device_id}/test-push",
    ),
    ("GET", "/api/v1/messages/{message_id}"): Call(
        "doctor",
        lambda w: f"/api/v1/messages/{w.message_id}",
        foreign=lambda w: f"/api/v1/messages/{w.message_id}",
    ),
    ("GET", "/api/v1/messages/{message_id}/attachments/{part}"): Call(
        "doctor",
        lambda w: f"/api/v1/messages/{w.message_id}/attachments/2",
        foreign=lambda w: f"/api/v1/messages/{w.message_id}/attachments/2",
    ),
    ("PATCH", "/api/v1/messages/{message_id}"): Call(
        "doctor",
        lambda w: f"/api/v1/messages/{w.message_id}",
        lambda w: {"json": {"seen": True}},
        foreign=lambda w: f"/api/v1/messages/{w.message_id}",
    ),
    ("POST", "/api/v1/messages/{message_id}/move"): Call(
        "doctor",
        lambda w: f"/api/v1/messages/{w.message_id}/move",
        lambda w: {"json": {"folder": "INBOX"}},  # where it is: later calls still find it
        foreign=lambda w: f"/api/v1/messages/{w.message_id}/move",
    ),
    ("POST", "/api/v1/messages/{message_id}/read-receipt"): Call(
        "doctor",
        lambda w: f"/api/v1/messages/{w.message_id}/read-receipt",
        foreign=lambda w: f"/api/v1/messages/{w.message_id}/read-receipt",
    ),
    ("POST", "/api/v1/mailboxes/{mailbox_id}/messages"): Call(
        "doctor",
        lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/messages",
        lambda w: {"json": {"to": ["dr.other@chu-test.mssante.fr"], "subject": "s", "text": "t"}},
        foreign=lambda w: f"/api/v1/mailboxes/{w.mailbox_id}/messages",
    ),
    ("GET", "/api/v1/admin/users"): Call("admin", lambda w: "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/users"): Call("admin", lambda w: "/api/v1/admin/users", _new_user),
    ("GET", "/api/v1/admin/users/{user_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/users/{w.created['user']}",
        foreign=lambda w: f"/api/v1/admin/users/{UNKNOWN}",
    ),
    ("PATCH", "/api/v1/admin/users/{user_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/users/{w.created['user']}",
        lambda w: {"json": {"display_name": "Dr New"}},
        foreign=lambda w: f"/api/v1/admin/users/{UNKNOWN}",
    ),
    ("GET", "/api/v1/admin/mailboxes"): Call("admin", lambda w: "/api/v1/admin/mailboxes"),
    ("POST", "/api/v1/admin/mailboxes"): Call(
        "admin", lambda w: "/api/v1/admin/mailboxes", _new_mailbox
    ),
    ("GET", "/api/v1/admin/mailboxes/{mailbox_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/mailboxes/{w.created['mailbox']}",
        foreign=lambda w: f"/api/v1/admin/mailboxes/{UNKNOWN}",
    ),
    ("PATCH", "/api/v1/admin/mailboxes/{mailbox_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/mailboxes/{w.created['mailbox']}",
        lambda w: {"json": {"display_name": "Secrétariat"}},
        foreign=lambda w: f"/api/v1/admin/mailboxes/{UNKNOWN}",
    ),
    ("PUT", "/api/v1/admin/mailboxes/{mailbox_id}/certificate"): Call(
        "admin",
        lambda w: f"/api/v1/admin/mailboxes/{w.created['mailbox']}/certificate",
        lambda w: _p12(),
        foreign=lambda w: f"/api/v1/admin/mailboxes/{UNKNOWN}/certificate",
    ),
    ("PUT", "/api/v1/admin/mailboxes/{mailbox_id}/members/{user_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/mailboxes/{w.created['mailbox']}/members/{w.created['user']}",
        lambda w: {"json": {"role": "delegate"}},
        foreign=lambda w: f"/api/v1/admin/mailboxes/{UNKNOWN}/members/{w.created['user']}",
    ),
    ("DELETE", "/api/v1/admin/mailboxes/{mailbox_id}/members/{user_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/mailboxes/{w.created['mailbox']}/members/{w.created['user']}",
        foreign=lambda w: f"/api/v1/admin/mailboxes/{UNKNOWN}/members/{w.created['user']}",
    ),
    ("GET", "/api/v1/admin/devices"): Call("admin", lambda w: "/api/v1/admin/devices"),
    ("POST", "/api/v1/admin/directory-sync"): Call(
        "admin", lambda w: "/api/v1/admin/directory-sync"
    ),
    ("GET", "/api/v1/admin/certificates"): Call("admin", lambda w: "/api/v1/admin/certificates"),
    ("GET", "/api/v1/admin/audit"): Call(
        "admin", lambda w: "/api/v1/admin/audit?action=message.*&actor=Mme%20DUPONT%20Jeanne"
    ),
    ("GET", "/api/v1/admin/audit/verify"): Call("admin", lambda w: "/api/v1/admin/audit/verify"),
    ("GET", "/api/v1/admin/audit/export"): Call("admin", lambda w: "/api/v1/admin/audit/export"),
    ("DELETE", "/api/v1/messages/{message_id}"): Call(
        "doctor",
        lambda w: f"/api/v1/messages/{w.message_id}",
        foreign=lambda w: f"/api/v1/messages/{w.message_id}",
    ),
    ("DELETE", "/api/v1/devices/{device_id}"): Call(
        "admin",
        lambda w: f"/api/v1/devices/{w.created['own_device']}",
        foreign=lambda w: f"/api/v1/devices/{w.doctor.device_id}",
    ),
    ("DELETE", "/api/v1/admin/devices/{device_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/devices/{w.created['other_device']}",
        foreign=lambda w: f"/api/v1/admin/devices/{UNKNOWN}",
    ),
    ("DELETE", "/api/v1/admin/mailboxes/{mailbox_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/mailboxes/{w.created['mailbox']}",
        foreign=lambda w: f"/api/v1/admin/mailboxes/{UNKNOWN}",
    ),
    ("DELETE", "/api/v1/admin/users/{user_id}"): Call(
        "admin",
        lambda w: f"/api/v1/admin/users/{w.created['user']}",
        foreign=lambda w: f"/api/v1/admin/users/{UNKNOWN}",
    ),
}

AFTER = {
    ("POST", "/api/v1/admin/users"): _remember("user"),
    ("POST", "/api/v1/admin/mailboxes"): _remember("mailbox"),
    ("POST", "/api/v1/mailboxes/{mailbox_id}/drafts"): _remember("draft"),
    ("PUT", "/api/v1/drafts/{draft_id}"): _remember("draft"),  # a new id after each save
}


def _operations(client: Any) -> set[tuple[str, str]]:
    document = body(client.get("/api/v1/openapi.json"))
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    }


def _records_after(services: Any, last_id: int) -> list[AuditRecord]:
    with services.sessions() as db:
        return list(
            db.scalars(select(AuditRecord).where(AuditRecord.id > last_id).order_by(AuditRecord.id))
        )


def _last_id(services: Any) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.coalesce(func.max(AuditRecord.id), 0)))


def _declared_action(app: Any, method: str, path: str) -> str:
    endpoint, _args = app.url_map.bind("localhost").match(path.split("?")[0], method)
    return app.view_functions[endpoint].audit_spec.action


def _call(w: World, app: Any, method: str, path: str, caller: SignedIn, **kwargs: Any) -> Any:
    """Make the call; check it left a record of the declared action, caller and outcome."""
    before = _last_id(w.services)
    response = w.client.open(path, method=method, headers=caller.headers, **kwargs)
    assert response.status_code != 500, (method, path, body(response))
    records = [r for r in _records_after(w.services, before) if r.actor == caller.user_id]
    action = _declared_action(app, method, path)
    traced = [r for r in records if r.action == action]
    assert traced, f"{method} {path} ({response.status_code}) left no {action} record"
    assert {r.outcome for r in traced} == {outcome_of(response.status_code)}
    return response


def test_every_operation_is_audited_when_allowed_and_when_refused(app, world: World) -> None:
    operations = _operations(world.client)
    walked = {op for op in operations if not op[1].startswith("/api/v1/auth/")}
    assert walked - set(CALLS) == set(), "add a call for these operations"
    assert set(CALLS) - operations == set(), "these operations are gone from the document"
    world.created["own_device"] = world.second_admin_device()
    other = sign_in(world.client, world.services)
    world.created["other_device"] = other.device_id

    outcomes = set()
    for (method, _template), call in CALLS.items():
        caller = world.doctor if call.who == "doctor" else world.admin
        if call.foreign is not None:
            # Someone else's id (or none of ours): the admin is no member of the doctor's
            # mailbox and owns none of their devices; admin calls get an unknown id.
            refused = _call(
                world, app, method, call.foreign(world), world.admin, **call.kwargs(world)
            )
            assert refused.status_code == 404, (method, call.foreign(world))
            outcomes.add(outcome_of(refused.status_code))
        response = _call(world, app, method, call.path(world), caller, **call.kwargs(world))
        outcomes.add(outcome_of(response.status_code))
        if (method, _template) in AFTER:
            assert response.status_code in (200, 201), body(response)
            AFTER[(method, _template)](world, response)
    assert {"ok", "not_found"} <= outcomes <= set(OUTCOMES)


def test_admin_calls_by_a_non_administrator_are_refused_and_audited(app, world: World) -> None:
    for (method, template), call in CALLS.items():
        if call.who != "admin" or "{" in template:
            continue
        refused = _call(world, app, method, call.path(world), world.doctor, **call.kwargs(world))
        assert refused.status_code == 403


def test_a_refusal_names_the_id_asked_for_and_the_problem_code(app, world: World) -> None:
    before = _last_id(world.services)
    response = world.client.get(f"/api/v1/messages/{world.message_id}", headers=world.admin.headers)
    assert response.status_code == 404
    [record] = [r for r in _records_after(world.services, before) if r.action == "message.read"]
    assert (record.outcome, record.target, record.mailbox) == (
        "not_found",
        world.message_id,
        None,  # whose mailbox it is in is not disclosed to the trail's reader either
    )
    assert record.details == '{"code":"not_found"}'


def test_ids_that_are_not_ids_and_search_text_stay_out_of_the_trail(app, world: World) -> None:
    before = _last_id(world.services)
    world.client.get("/api/v1/messages/Mme DUPONT Jeanne", headers=world.doctor.headers)
    world.client.get("/api/v1/admin/audit?actor=Mme%20DUPONT%20Jeanne", headers=world.admin.headers)
    records = _records_after(world.services, before)
    assert {r.action for r in records} == {"message.read", "audit.search"}
    assert not any("DUPONT" in f"{r.target} {r.details}" for r in records)


def test_calls_without_a_verified_caller_are_not_recorded(app, world: World) -> None:
    before = _last_id(world.services)
    assert world.client.get("/api/v1/mailboxes").status_code == 401
    assert world.client.get("/api/v1/mailboxes", headers=bearer("forged")).status_code == 401
    assert _records_after(world.services, before) == []


def test_sign_in_calls_record_their_own_steps(client, services) -> None:
    before = _last_id(services)
    user = sign_in(client, services)
    client.post(
        "/api/v1/auth/otp/verify",
        headers=user.headers,
        json={"code": user.authenticator.next_code()},
    )
    client.post("/api/v1/auth/refresh", headers=bearer(user.tokens["refresh_token"]))
    client.post("/api/v1/auth/logout", headers=user.headers)
    actions = [r.action for r in _records_after(services, before)]
    for step in (
        "auth.login",
        "auth.otp_enroll",
        "auth.otp_activate",
        "auth.session_open",
        "auth.otp_verify",
        "auth.refresh",
    ):
        assert step in actions


def test_every_view_declares_its_audit_action_or_a_reason_not_to(app) -> None:
    assert unaudited_endpoints(app) == []
    assert all(reason for reason in NOT_AUDITED.values())
