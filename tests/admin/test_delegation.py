"""Delegation: owners and delegates per mailbox. Removing a member cuts their access and
their pushes for that mailbox at once; revoking a lost phone signs it out at once."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from backend.push import payloads
from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.database import session_scope
from backend.storage.models import AuditRecord, Folder, Mailbox, Message, OutboxEvent, utcnow
from tests.admin.conftest import sign_in
from tests.support import body


@pytest.fixture
def mailbox(client, admin) -> dict:
    payload = {
        "address": "secretariat.pediatrie@chu-test.mssante.fr",
        "kind": "ORG",
        "imap": {
            "host": "imap.x",
            "port": 993,
            "security": "tls",
            "auth": "password",
            "secret": "s",
        },
    }
    created = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload)
    assert created.status_code == 201, body(created)
    return body(created)


def _member_url(mailbox: dict, user_id: str) -> str:
    return f"/api/v1/admin/mailboxes/{mailbox['id']}/members/{user_id}"


def test_a_delegate_sees_the_mailbox_and_loses_it_at_once_on_removal(
    client, services, admin, mailbox
) -> None:
    delegate = sign_in(client, services)
    granted = client.put(
        _member_url(mailbox, delegate.user_id), headers=admin.headers, json={"role": "delegate"}
    )
    assert granted.status_code == 200 and body(granted)["role"] == "delegate"
    [seen] = body(client.get("/api/v1/mailboxes", headers=delegate.headers))
    assert (seen["id"], seen["role"]) == (mailbox["id"], "delegate")
    messages_url = f"/api/v1/mailboxes/{mailbox['id']}/messages"
    assert client.get(messages_url, headers=delegate.headers).status_code == 200
    members = body(client.get(f"/api/v1/admin/mailboxes/{mailbox['id']}", headers=admin.headers))
    assert members["members"] == [
        {"user_id": delegate.user_id, "username": delegate.username, "role": "delegate"}
    ]

    removed = client.delete(_member_url(mailbox, delegate.user_id), headers=admin.headers)
    assert removed.status_code == 204
    # The very next call, with the same token, no longer sees the mailbox.
    assert body(client.get("/api/v1/mailboxes", headers=delegate.headers)) == []
    refused = client.get(messages_url, headers=delegate.headers)
    assert refused.status_code == 404 and body(refused)["code"] == "not_found"

    with services.sessions() as db:
        actions = [
            (r.action, r.target, r.mailbox, json.loads(r.details))
            for r in db.scalars(
                select(AuditRecord)
                .where(AuditRecord.action.like("admin.member_%"))
                .order_by(AuditRecord.id)
            )
        ]
    assert actions == [
        (
            "admin.member_grant",
            delegate.user_id,
            mailbox["id"],
            {"after.role": "delegate", "before.role": None},
        ),
        ("admin.member_revoke", delegate.user_id, mailbox["id"], {"before.role": "delegate"}),
    ]


def test_a_role_can_be_changed_and_a_bad_role_is_refused(client, services, admin, mailbox) -> None:
    user = sign_in(client, services)
    url = _member_url(mailbox, user.user_id)
    client.put(url, headers=admin.headers, json={"role": "delegate"})
    assert body(client.put(url, headers=admin.headers, json={"role": "owner"}))["role"] == "owner"
    bad = client.put(url, headers=admin.headers, json={"role": "boss"})
    assert bad.status_code == 422 and "role" in body(bad)["errors"]
    not_member = client.delete(_member_url(mailbox, admin.user_id), headers=admin.headers)
    assert not_member.status_code == 404


def _announce(services, mailbox_id: str, uid: int) -> None:
    """What sync does on new mail: an unread message in the cache and an outbox event."""
    with session_scope(services.sessions) as db:
        internal = db.scalar(select(Mailbox.id).where(Mailbox.public_id == mailbox_id))
        folder = db.scalar(select(Folder).where(Folder.mailbox_id == internal))
        if folder is None:
            folder = Folder(mailbox_id=internal, name="INBOX", role="inbox")
            db.add(folder)
            db.flush()
        message = Message(mailbox_id=internal, folder_id=folder.id, uid=uid, sort_key=utcnow())
        db.add(message)
        db.flush()
        db.add(OutboxEvent(kind=payloads.NEW_MAIL, mailbox_id=internal, message_id=message.id))


def _pushed_tokens(fake_fcm) -> list[str]:
    return [r.body["message"]["token"] for r in fake_fcm.requests]


def test_a_removed_delegate_gets_no_more_pushes_for_the_mailbox(
    client, services, admin, mailbox, fake_fcm, fcm_credentials
) -> None:
    delegate = sign_in(
        client,
        services,
        device={"name": "Pixel secrétariat", "platform": "android", "push_token": "tok-delegate"},
    )
    client.put(
        _member_url(mailbox, delegate.user_id), headers=admin.headers, json={"role": "delegate"}
    )
    with FcmSender(fcm_credentials, fake_fcm.base_url) as sender:
        dispatcher = Dispatcher(services.sessions, sender)
        _announce(services, mailbox["id"], uid=1)
        assert dispatcher.drain() == 1
        assert _pushed_tokens(fake_fcm) == ["tok-delegate"]

        client.delete(_member_url(mailbox, delegate.user_id), headers=admin.headers)
        fake_fcm.reset()
        _announce(services, mailbox["id"], uid=2)
        assert dispatcher.drain() == 1
    assert _pushed_tokens(fake_fcm) == []


def test_admin_lists_every_device_and_revokes_a_lost_phone_at_once(client, services, admin) -> None:
    nurse = sign_in(client, services, device={"name": "iPhone perdu", "platform": "ios"})
    listed = body(client.get("/api/v1/admin/devices", headers=admin.headers))
    by_id = {d["id"]: d for d in listed["items"]}
    assert by_id[nurse.device_id]["user_id"] == nurse.user_id
    assert by_id[nurse.device_id]["name"] == "iPhone perdu"
    assert admin.device_id in by_id
    only_nurse = body(
        client.get(f"/api/v1/admin/devices?user={nurse.user_id}", headers=admin.headers)
    )
    assert [d["id"] for d in only_nurse["items"]] == [nurse.device_id]

    revoked = client.delete(f"/api/v1/admin/devices/{nurse.device_id}", headers=admin.headers)
    assert revoked.status_code == 204
    refused = client.get("/api/v1/mailboxes", headers=nurse.headers)
    assert refused.status_code == 401 and body(refused)["code"] == "token_revoked"
    refresh = client.post(
        "/api/v1/auth/refresh",
        headers={"Authorization": f"Bearer {nurse.tokens['refresh_token']}"},
    )
    assert refresh.status_code == 401
    again = client.delete(f"/api/v1/admin/devices/{nurse.device_id}", headers=admin.headers)
    assert again.status_code == 404
    with services.sessions() as db:
        record = db.scalar(select(AuditRecord).where(AuditRecord.action == "admin.device_revoke"))
    assert (record.target, json.loads(record.details)) == (nurse.device_id, {"user": nurse.user_id})
