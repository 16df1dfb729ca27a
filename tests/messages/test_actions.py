"""Flags, deletes, who may touch which message, and what the audit trail keeps of it."""

from __future__ import annotations

import json
import logging
import os

import pytest
from sqlalchemy import func, select

from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import Mailbox, Message, MessageTombstone, OutboxEvent
from backend.store.actions import move_uid
from devtools import samples
from tests.messages.support import Inbox, audit_rows, audit_text
from tests.support import body


def _server_flags(inbox: Inbox, folder: str = "INBOX") -> list[set[bytes]]:
    with inbox.desktop() as desktop:
        desktop.select_folder(folder, readonly=True)
        return [set(flags) for flags in desktop.get_flags(desktop.search("ALL")).values()]


def _cached(services, message_id: str) -> Message | None:
    with services.sessions() as db:
        return db.scalar(select(Message).where(Message.public_id == message_id))


def _outbox(services, mailbox_id: str, kind: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count(OutboxEvent.id))
            .join(Mailbox, Mailbox.id == OutboxEvent.mailbox_id)
            .where(Mailbox.public_id == mailbox_id, OutboxEvent.kind == kind)
        )


def _patch(inbox: Inbox, message_id: str, **flags: bool):
    return inbox.http.patch(f"/api/v1/messages/{message_id}", headers=inbox.headers, json=flags)


def _delete(inbox: Inbox, message_id: str):
    return inbox.http.delete(f"/api/v1/messages/{message_id}", headers=inbox.headers)


def test_marking_seen_stores_seen_on_the_server_then_in_the_cache(
    inbox: Inbox, dovecot_services
) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    before = _cached(dovecot_services, message_id).change_seq

    response = _patch(inbox, message_id, seen=True)

    assert response.status_code == 200
    assert body(response)["seen"] is True
    assert _server_flags(inbox) == [{b"\\Seen"}]
    assert _cached(dovecot_services, message_id).change_seq > before
    assert _outbox(dovecot_services, inbox.mailbox_id, "mail.read") == 1


def test_flags_go_both_ways_on_the_server(inbox: Inbox, dovecot_services) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))

    assert _patch(inbox, message_id, seen=True, flagged=True).status_code == 200
    assert _server_flags(inbox) == [{b"\\Seen", b"\\Flagged"}]
    envelope = body(_patch(inbox, message_id, seen=False, flagged=False))

    assert (envelope["seen"], envelope["flagged"]) == (False, False)
    assert _server_flags(inbox) == [set()]
    assert _outbox(dovecot_services, inbox.mailbox_id, "mail.read") == 1  # only unread → read


def test_flagging_alone_does_not_clear_notifications(inbox: Inbox, dovecot_services) -> None:
    message_id = inbox.deliver(samples.urgent(to=inbox.address))

    assert body(_patch(inbox, message_id, flagged=True))["flagged"] is True

    assert _server_flags(inbox) == [{b"\\Flagged"}]
    assert _outbox(dovecot_services, inbox.mailbox_id, "mail.read") == 0


def test_a_flag_body_that_is_not_boolean_is_a_validation_error(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))

    response = _patch(inbox, message_id, seen="perhaps")

    assert response.status_code == 422
    assert body(response)["code"] == "validation_error"


def test_delete_moves_the_message_to_trash_on_the_server(inbox: Inbox, dovecot_services) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))

    response = _delete(inbox, message_id)

    assert response.status_code == 204
    assert _server_flags(inbox, "INBOX") == []
    assert len(_server_flags(inbox, "Trash")) == 1
    assert _cached(dovecot_services, message_id) is None
    with dovecot_services.sessions() as db:
        assert db.scalar(select(MessageTombstone).where(MessageTombstone.public_id == message_id))
    assert _outbox(dovecot_services, inbox.mailbox_id, "mail.read") == 1  # it was unread
    assert inbox.get(message_id).status_code == 404


def _move(inbox: Inbox, message_id: str, folder: str):
    return inbox.http.post(
        f"/api/v1/messages/{message_id}/move", headers=inbox.headers, json={"folder": folder}
    )


def test_a_move_files_the_message_on_the_server_and_it_stays_the_same_message(
    inbox: Inbox, dovecot_services
) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    with inbox.desktop() as desktop:
        desktop.create_folder("Archives")
    inbox.sync_folders()
    announced = _outbox(dovecot_services, inbox.mailbox_id, "mail.new")

    response = _move(inbox, message_id, "Archives")

    assert response.status_code == 200, body(response)
    assert body(response)["id"] == message_id and body(response)["folder"] == "Archives"
    # A second IMAP client, the desktop, sees it filed.
    assert _server_flags(inbox, "INBOX") == []
    assert len(_server_flags(inbox, "Archives")) == 1
    # Read from where it is now; the next folder poll finds nothing new to announce.
    assert inbox.read(message_id)["folder"] == "Archives"
    inbox.sync_folders()
    inbox.sync()
    assert _cached(dovecot_services, message_id) is not None
    assert _outbox(dovecot_services, inbox.mailbox_id, "mail.new") == announced


def test_a_move_to_junk_takes_the_message_out_of_the_phone(inbox: Inbox, dovecot_services) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    with inbox.desktop() as desktop:
        desktop.create_folder("Junk")
    inbox.sync_folders()

    assert _move(inbox, message_id, "Junk").status_code == 204
    assert len(_server_flags(inbox, "Junk")) == 1
    assert _cached(dovecot_services, message_id) is None
    assert inbox.get(message_id).status_code == 404


def test_a_move_to_a_folder_the_mailbox_does_not_have_is_refused(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    response = _move(inbox, message_id, "Nulle part")
    assert response.status_code == 422
    assert body(response)["code"] == "validation_error"
    assert len(_server_flags(inbox, "INBOX")) == 1


def test_without_move_the_server_gets_copy_deleted_and_uid_expunge(inbox: Inbox) -> None:
    inbox.deliver(samples.plain_letter(to=inbox.address))
    inbox.deliver(samples.urgent(to=inbox.address))

    class NoMove:
        """The desktop connection, minus the MOVE extension (RFC 6851)."""

        def __init__(self, client) -> None:
            self._client = client

        def has_capability(self, name: str) -> bool:
            return name != "MOVE" and self._client.has_capability(name)

        def __getattr__(self, name: str):
            return getattr(self._client, name)

    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX")
        first, second = sorted(desktop.search("ALL"))
        desktop.add_flags([second], [b"\\Deleted"])  # someone else's pending delete
        move_uid(NoMove(desktop), first, "Trash")
        remaining = desktop.search("ALL")

    assert remaining == [second]  # UID EXPUNGE removed only ours
    assert len(_server_flags(inbox, "Trash")) == 1


def test_another_users_message_is_not_found_for_every_call(
    http, dovecot_services, dovecot, inbox: Inbox
) -> None:
    message_id = inbox.deliver(samples.xdm_discharge_letter(to=inbox.address))
    intruder = Inbox.create(http, dovecot_services, dovecot)

    calls = [
        intruder.get(message_id),
        intruder.download(message_id, "2"),
        intruder.download(message_id, "2/xdm/1"),
        _patch(intruder, message_id, seen=True),
        _delete(intruder, message_id),
        intruder.get("msg_doesnotexist"),
    ]

    assert [c.status_code for c in calls] == [404] * len(calls)
    assert {body(c)["code"] for c in calls} == {"not_found"}
    assert _server_flags(inbox) == [set()]  # nothing happened to the owner's message


def test_a_delegate_reads_and_flags_a_message_of_the_org_mailbox(
    http, dovecot_services, dovecot
) -> None:
    secretariat = Inbox.create(http, dovecot_services, dovecot, kind="ORG")
    message_id = secretariat.deliver(samples.mdn_requested(to=secretariat.address))
    nurse = Inbox.create(http, dovecot_services, dovecot)
    with session_scope(dovecot_services.sessions) as db:
        from backend.accounts import users

        mailbox = registry.find_mailbox(db=db, address=secretariat.address)
        user = users.find_user(db=db, username=nurse.username)
        registry.grant(db=db, mailbox=mailbox, user=user, role="delegate")

    message = nurse.read(message_id)
    flagged = _patch(nurse, message_id, flagged=True)

    assert message["mailbox_id"] == secretariat.mailbox_id
    assert "compte rendu de l'échocardiographie" in message["text"]
    assert flagged.status_code == 200
    assert _server_flags(secretariat) == [{b"\\Flagged"}]


def test_every_action_is_audited_by_id_and_never_with_content(
    inbox: Inbox, dovecot_services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "CANARY" + os.urandom(6).hex()
    message_id = inbox.deliver(samples.canary_message(canary, to=inbox.address))

    inbox.read(message_id)
    assert inbox.download(message_id, "2").status_code == 200
    _patch(inbox, message_id, seen=True, flagged=True)
    _delete(inbox, message_id)

    actions = {
        row.action: row
        for row in audit_rows(dovecot_services)
        if row.target_type == "message" and row.target == message_id
    }
    assert set(actions) == {"message.read", "message.download", "message.flags", "message.delete"}
    for row in actions.values():
        assert row.mailbox == inbox.mailbox_id
        assert row.device is not None and row.actor.startswith("usr_")
        assert row.outcome == "ok"
    trail = audit_text(dovecot_services)
    assert canary not in trail
    assert canary.lower() not in trail.lower()
    assert canary not in caplog.text  # nor in the logs


def test_a_read_that_fails_on_the_server_is_audited_as_failed_with_its_code(
    inbox: Inbox, dovecot_services
) -> None:
    from sqlalchemy import update

    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    with dovecot_services.sessions.begin() as db:
        db.execute(update(Mailbox).where(Mailbox.public_id == inbox.mailbox_id).values(imap_port=1))

    assert _patch(inbox, message_id, seen=True).status_code == 503

    [row] = audit_rows(dovecot_services, "message.flags")
    assert (row.outcome, json.loads(row.details)["code"]) == ("failed", "mailbox_unavailable")
    assert _cached(dovecot_services, message_id).seen is False  # cache not ahead of IMAP


@pytest.mark.parametrize("flags", [{}, {"seen": False}])
def test_a_patch_that_changes_nothing_returns_the_envelope_unchanged(
    inbox: Inbox, dovecot_services, flags: dict
) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    before = _cached(dovecot_services, message_id).change_seq

    response = _patch(inbox, message_id, **flags)

    assert response.status_code == 200
    assert body(response)["seen"] is False
    assert _cached(dovecot_services, message_id).change_seq == before


def test_flag_changes_and_deletes_made_here_reach_the_other_devices_through_sync(
    inbox: Inbox,
) -> None:
    kept = inbox.deliver(samples.plain_letter(to=inbox.address))
    deleted = inbox.deliver(samples.urgent(to=inbox.address))
    state = body(inbox.http.get("/api/v1/sync", headers=inbox.headers))["state"]

    _patch(inbox, kept, seen=True)
    _delete(inbox, deleted)
    delta = body(
        inbox.http.get("/api/v1/sync", headers=inbox.headers, query_string={"since": state})
    )

    ops = {(c["op"], c["message"]["id"]) for c in delta["changes"]}
    assert ops == {("upsert", kept), ("delete", deleted)}
    [upsert] = [c["message"] for c in delta["changes"] if c["op"] == "upsert"]
    assert upsert["seen"] is True


@pytest.mark.parametrize("message_id", ["x" * 1000, "msg_%00", "msg_ü'--", "..", "msg_" + "9" * 40])
def test_odd_message_ids_are_not_found_never_a_server_error(inbox: Inbox, message_id: str) -> None:
    calls = [
        inbox.get(message_id),
        inbox.download(message_id, "1"),
        _patch(inbox, message_id, seen=True),
        _delete(inbox, message_id),
    ]

    assert [c.status_code for c in calls] == [404] * 4
    assert all(c.mimetype == "application/problem+json" for c in calls)
