"""Every watched folder, not only INBOX: listed with roles and counts, synced, and pushed.

Each test runs on both watches. On a server with NOTIFY (RFC 5465) a message filed into a
subfolder (as a Sieve rule files a lab result) is announced with no poll at all: the
folder poll is set to an hour there. On a server without it (Dovecot with its mailbox
list index off), within one poll. Folders made, renamed and removed on the desktop show
in `GET /mailboxes/{id}/folders` at the next poll on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import make_msgid
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.storage.models import Folder, Mailbox, Message, MessageTombstone, OutboxEvent
from tests.factories import create_dovecot_mailbox, create_user
from tests.support import Authenticator, bearer, body, wait_until
from tests.sync.support import RunningWorker, desktop_client, mail, outbox_count, sync_state

POLL_SECONDS = 5  # the setting's minimum: a test waits at most a few polls
NO_POLL_SECONDS = 3600  # on the NOTIFY path: only a notification can be in time


@pytest.fixture(params=["notify", "poll"])
def watch(request) -> str:
    return request.param


@pytest.fixture
def folder_server(watch, dovecot, dovecot_without_notify):
    return dovecot if watch == "notify" else dovecot_without_notify


@pytest.fixture
def poll_seconds(watch) -> int:
    return NO_POLL_SECONDS if watch == "notify" else POLL_SECONDS


@pytest.fixture
def polling_app(make_app, folder_server, poll_seconds):
    return make_app(
        ESTAFETTE_CA_BUNDLE=str(folder_server.ca_cert_path),
        ESTAFETTE_FOLDER_POLL_SECONDS=str(poll_seconds),
    )


@pytest.fixture
def doctor(polling_app, folder_server) -> Iterator[dict[str, Any]]:
    """A signed-in doctor whose Dovecot mailbox a running sync worker holds."""
    services = polling_app.extensions["estafette"]
    username = create_user(services)
    dovecot = folder_server
    address, password, public_id = create_dovecot_mailbox(
        services, dovecot, owner=username, already_there=[_with_message_id(mail("déjà là"))]
    )
    client = polling_app.test_client()
    auth = bearer(Authenticator().sign_in(client, username)["access_token"])
    with RunningWorker(services):
        wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="the first sync")
        yield {
            "services": services,
            "http": client,
            "auth": auth,
            "address": address,
            "password": password,
            "id": public_id,
            "dovecot": dovecot,
        }


def _with_message_id(raw: bytes) -> bytes:
    """As every MTA on the way adds one (RFC 5322 §3.6.4): how a move is recognised."""
    return f"Message-ID: {make_msgid(domain='ch-exemple.mssante.fr')}\r\n".encode() + raw


def _folders(doctor: dict[str, Any]) -> dict[str, dict]:
    url = f"/api/v1/mailboxes/{doctor['id']}/folders"
    response = doctor["http"].get(url, headers=doctor["auth"])
    assert response.status_code == 200, body(response)
    return {folder["name"]: folder for folder in body(response)}


def _cached_in(services: Any, public_id: str, folder_name: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count(Message.id))
            .join(Folder, Folder.id == Message.folder_id)
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Mailbox.public_id == public_id, Folder.name == folder_name)
        )


def test_each_watch_runs_against_the_server_it_claims(doctor, watch) -> None:
    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        assert (b"NOTIFY" in desktop.capabilities()) == (watch == "notify")


def test_folders_are_listed_with_their_roles_and_junk_and_trash_are_not_watched(doctor) -> None:
    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        desktop.create_folder("Junk")
        desktop.append("Junk", mail("pourriel"))
    folders = wait_until(
        lambda: (found := _folders(doctor)) and "Junk" in found and found,
        timeout=4 * POLL_SECONDS,
        what="Junk to be listed",
    )
    assert next(iter(folders)) == "INBOX"
    assert {name: f["role"] for name, f in folders.items()} == {
        "INBOX": "inbox",
        "Drafts": "drafts",
        "Sent": "sent",
        "Trash": "trash",
        "Junk": "junk",
    }
    assert {name for name, f in folders.items() if not f["watched"]} == {"Junk", "Trash"}
    assert folders["INBOX"]["total"] == 1 and folders["INBOX"]["unread"] == 1
    # Not synced, but counted from the server's STATUS.
    assert folders["Junk"]["total"] == 1
    assert _cached_in(doctor["services"], doctor["id"], "Junk") == 0


def test_mail_a_sieve_rule_files_into_a_subfolder_is_cached_and_pushed_within_a_poll(
    doctor,
) -> None:
    """The on-call doctor's lab results, filed by a server-side rule, still ring."""
    services, dovecot = doctor["services"], dovecot_of(doctor)
    dovecot.set_sieve(
        doctor["address"],
        'require ["fileinto", "mailbox"];\n'
        'if header :contains "subject" "Kaliémie" { fileinto :create "Résultats"; stop; }\n',
    )
    before = outbox_count(services, doctor["id"])

    dovecot.deliver(doctor["address"], mail("Kaliémie"))  # over LMTP, through the rule
    wait_until(
        lambda: outbox_count(services, doctor["id"]) == before + 1,
        timeout=3 * POLL_SECONDS,
        what="the filed message to be announced",
    )
    listing = doctor["http"].get(
        f"/api/v1/mailboxes/{doctor['id']}/messages",
        headers=doctor["auth"],
        query_string={"folder": "Résultats"},
    )
    assert [m["subject"] for m in body(listing)["items"]] == ["Kaliémie"]
    assert body(listing)["items"][0]["folder"] == "Résultats"
    assert _folders(doctor)["Résultats"] == {
        "name": "Résultats",
        "role": None,
        "watched": True,
        "unread": 1,
        "total": 1,
    }
    assert _cached_in(services, doctor["id"], "INBOX") == 1  # only "déjà là": it was filed
    with services.sessions() as db:  # announced once, as INBOX mail is
        assert db.scalar(select(func.count(OutboxEvent.id))) == before + 1


def test_a_desktop_move_is_the_same_message_in_its_new_folder_and_rings_no_more(doctor) -> None:
    services = doctor["services"]
    inbox = doctor["http"].get(f"/api/v1/mailboxes/{doctor['id']}/messages", headers=doctor["auth"])
    [message] = body(inbox)["items"]  # "déjà là", unread
    before = outbox_count(services, doctor["id"])

    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        desktop.create_folder("Archives")
        desktop.select_folder("INBOX")
        desktop.move(desktop.search(["ALL"]), "Archives")
    wait_until(
        lambda: _cached_in(services, doctor["id"], "Archives") == 1,
        timeout=4 * POLL_SECONDS,
        what="the move to reach the cache",
    )
    moved = doctor["http"].get(f"/api/v1/messages/{message['id']}", headers=doctor["auth"])
    assert moved.status_code == 200, body(moved)
    assert body(moved)["folder"] == "Archives" and body(moved)["subject"] == "déjà là"
    assert _cached_in(services, doctor["id"], "INBOX") == 0
    assert outbox_count(services, doctor["id"]) == before  # no second mail.new


def test_a_message_without_message_id_moved_on_the_desktop_is_still_one_message(doctor) -> None:
    """No Message-ID (RFC 5322 makes it optional): date, sender, subject and size together
    recognise the message in its new folder."""
    services = doctor["services"]
    before = outbox_count(services, doctor["id"])
    raw = mail("Sans identifiant")
    assert b"Message-ID" not in raw
    dovecot_of(doctor).deliver(doctor["address"], raw)
    wait_until(lambda: outbox_count(services, doctor["id"]) == before + 1, what="the push")
    listing = doctor["http"].get(
        f"/api/v1/mailboxes/{doctor['id']}/messages", headers=doctor["auth"]
    )
    [message] = [m for m in body(listing)["items"] if m["subject"] == "Sans identifiant"]

    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        desktop.create_folder("Archives")
        desktop.select_folder("INBOX")
        desktop.move(desktop.search(["SUBJECT", "Sans identifiant"]), "Archives")
    wait_until(
        lambda: _cached_in(services, doctor["id"], "Archives") == 1,
        timeout=4 * POLL_SECONDS,
        what="the move to reach the cache",
    )
    moved = doctor["http"].get(f"/api/v1/messages/{message['id']}", headers=doctor["auth"])
    assert moved.status_code == 200, body(moved)
    assert body(moved)["folder"] == "Archives"
    assert outbox_count(services, doctor["id"]) == before + 1  # no second mail.new


@pytest.mark.parametrize("poll_seconds", [POLL_SECONDS])  # on both watches
def test_folders_renamed_and_deleted_on_the_desktop_follow_at_the_next_poll(doctor) -> None:
    services = doctor["services"]
    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        desktop.create_folder("Cardiologie")
        desktop.append("Cardiologie", _with_message_id(mail("ECG")))
    wait_until(
        lambda: _cached_in(services, doctor["id"], "Cardiologie") == 1,
        timeout=4 * POLL_SECONDS,
        what="the new folder's mail",
    )
    before = outbox_count(services, doctor["id"])
    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        desktop.rename_folder("Cardiologie", "Cardio")
        before = outbox_count(services, doctor["id"])
    wait_until(
        lambda: "Cardio" in (found := _folders(doctor)) and "Cardiologie" not in found,
        timeout=4 * POLL_SECONDS,
        what="the rename",
    )
    wait_until(lambda: _cached_in(services, doctor["id"], "Cardio") == 1, what="its mail moved")
    assert outbox_count(services, doctor["id"]) == before  # not new mail: no push

    with desktop_client(dovecot_of(doctor), doctor["address"], doctor["password"]) as desktop:
        desktop.delete_folder("Cardio")
    wait_until(
        lambda: "Cardio" not in _folders(doctor), timeout=4 * POLL_SECONDS, what="the delete"
    )
    assert _cached_in(services, doctor["id"], "Cardio") == 0
    with services.sessions() as db:  # the app's delta sync hears of the message that went
        assert db.scalar(select(func.count(MessageTombstone.id))) >= 1


def dovecot_of(doctor: dict[str, Any]) -> Any:
    return doctor["dovecot"]


@pytest.mark.parametrize("watch", ["notify"])
def test_mail_filed_after_a_desktop_rename_still_rings_at_once_every_time(doctor) -> None:
    """A rename of a folder the desktop had open must not deafen the NOTIFY watch: mail
    filed into other folders afterwards rings with no poll to fall back on."""
    services, dovecot = doctor["services"], dovecot_of(doctor)
    dovecot.set_sieve(
        doctor["address"],
        'require ["fileinto", "mailbox", "variables"];\n'
        'if header :matches "subject" "Résultat *" { fileinto :create "${1}"; stop; }\n',
    )
    with desktop_client(dovecot, doctor["address"], doctor["password"]) as desktop:
        desktop.create_folder("Cardiologie")
        desktop.append("Cardiologie", _with_message_id(mail("ECG")))
        wait_until(lambda: _cached_in(services, doctor["id"], "Cardiologie") == 1, what="ECG")
        desktop.select_folder("Cardiologie")  # the secretary reads it on her desktop
        desktop.search(["ALL"])
        desktop.unselect_folder()
        desktop.rename_folder("Cardiologie", "Cardio")
        before = outbox_count(services, doctor["id"])
        for announced, folder in enumerate(("Biologie", "Imagerie", "Biologie"), start=1):
            dovecot.deliver(doctor["address"], _with_message_id(mail(f"Résultat {folder}")))
            wait_until(
                lambda n=announced: outbox_count(services, doctor["id"]) == before + n,
                what=f"mail filed into {folder} to be announced, with no poll to fall back on",
            )
    assert _cached_in(services, doctor["id"], "Biologie") == 2
    assert _cached_in(services, doctor["id"], "Imagerie") == 1
