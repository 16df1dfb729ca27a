"""Which folders are watched: the owner's setting; a delegate files and sends, but cannot.

Watched folders are synced and their new mail pushed; by default every folder but Junk and
Trash. Unwatching a folder takes its messages off the phone; watching it again imports
it silently.
"""

from __future__ import annotations

from sqlalchemy import func, select

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import Folder, Message, MessageTombstone, OutboxEvent
from devtools import samples
from tests.messages.support import Inbox
from tests.support import body


def _watch(inbox: Inbox, folder: str, watched: bool | None):
    return inbox.http.patch(
        f"/api/v1/mailboxes/{inbox.mailbox_id}/folders",
        headers=inbox.headers,
        json={"folder": folder, "watched": watched},
    )


def _cached_in(services, folder: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count(Message.id))
            .join(Folder, Folder.id == Message.folder_id)
            .where(Folder.name == folder)
        )


def _filed(inbox: Inbox, folder: str) -> None:
    with inbox.desktop() as desktop:
        desktop.create_folder(folder)
        desktop.append(folder, samples.plain_letter(to=inbox.address))
    inbox.sync_folders()


def test_the_owner_watches_junk_and_its_mail_is_synced_without_ringing(
    inbox: Inbox, dovecot_services
) -> None:
    _filed(inbox, "Junk")
    assert _cached_in(dovecot_services, "Junk") == 0

    response = _watch(inbox, "Junk", True)

    assert response.status_code == 200, body(response)
    assert {f["name"]: f["watched"] for f in body(response)}["Junk"] is True
    inbox.sync_folders()
    assert _cached_in(dovecot_services, "Junk") == 1
    with dovecot_services.sessions() as db:  # what was there before is imported silently
        assert db.scalar(select(func.count(OutboxEvent.id))) == 0


def test_an_unwatched_folder_leaves_the_phone_and_returns_to_the_default(
    inbox: Inbox, dovecot_services
) -> None:
    _filed(inbox, "Archives")
    assert _cached_in(dovecot_services, "Archives") == 1

    assert _watch(inbox, "Archives", False).status_code == 200
    assert _cached_in(dovecot_services, "Archives") == 0
    with dovecot_services.sessions() as db:  # /sync tells the other devices
        assert db.scalar(select(func.count(MessageTombstone.id))) == 1
    inbox.sync_folders()
    assert _cached_in(dovecot_services, "Archives") == 0

    back = _watch(inbox, "Archives", None)
    assert {f["name"]: f["watched"] for f in body(back)}["Archives"] is True
    inbox.sync_folders()
    assert _cached_in(dovecot_services, "Archives") == 1


def test_a_delegate_files_mail_but_cannot_change_the_folder_settings(
    http, dovecot_services, dovecot
) -> None:
    secretariat = Inbox.create(http, dovecot_services, dovecot, kind="ORG")
    message_id = secretariat.deliver(samples.plain_letter(to=secretariat.address))
    _filed(secretariat, "Archives")
    nurse = Inbox.create(http, dovecot_services, dovecot)
    with session_scope(dovecot_services.sessions) as db:
        mailbox = registry.find_mailbox(db=db, address=secretariat.address)
        user = users.find_user(db=db, username=nurse.username)
        registry.grant(db=db, mailbox=mailbox, user=user, role="delegate")
    nurse.mailbox_id = secretariat.mailbox_id

    moved = http.post(
        f"/api/v1/messages/{message_id}/move", headers=nurse.headers, json={"folder": "Archives"}
    )
    refused = _watch(nurse, "Archives", False)

    assert moved.status_code == 200, body(moved)
    assert refused.status_code == 403 and body(refused)["code"] == "forbidden"
    assert _cached_in(dovecot_services, "Archives") == 2  # nothing changed
    assert _watch(secretariat, "Archives", False).status_code == 200


def test_a_folder_the_mailbox_does_not_have_is_refused(inbox: Inbox) -> None:
    response = _watch(inbox, "Nulle part", True)
    assert response.status_code == 422 and body(response)["code"] == "validation_error"
