"""GET /sync: a snapshot, then only what changed, across every mailbox the user sees."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from sqlalchemy import select

from backend.mailboxes import change_log
from backend.storage.database import session_scope
from backend.storage.models import AuditRecord, Folder, Mailbox, OutboxEvent, utcnow
from backend.store import cache as store
from tests.mailboxes.support import (
    deliver,
    expunge,
    grant,
    make_mailbox,
    mark_seen,
    revoke,
    sign_in,
)
from tests.support import body


def _sync(client, headers, since=None, **params):
    return client.get(
        "/api/v1/sync", headers=headers, query_string=params | ({"since": since} if since else {})
    )


def _ok(client, headers, since=None, **params) -> dict:
    response = _sync(client, headers, since, **params)
    assert response.status_code == 200, body(response)
    return body(response)


def _ops(result: dict) -> list[tuple[str, str]]:
    return [(change["op"], change["message"]["id"]) for change in result["changes"]]


def _all_changes(client, headers, since=None, limit=200) -> tuple[list, str, int]:
    """Follow `more` to the end: every (op, id), the final state, and the pages it took."""
    ops, state, pages = [], since, 0
    while True:
        page = _ok(client, headers, state, limit=limit)
        ops += _ops(page)
        state, pages = page["state"], pages + 1
        if not page["more"]:
            return ops, state, pages
        assert page["changes"], "a page that says `more` makes progress"


def test_without_since_the_snapshot_holds_every_message_of_every_visible_mailbox(
    client, services
) -> None:
    username, headers = sign_in(client, services)
    own = make_mailbox(services, member=username)
    org = make_mailbox(services, member=username, role="delegate", kind="ORG")
    hidden = make_mailbox(services)
    mine = deliver(services, own, 2) + deliver(services, own, 1, folder="Sent")
    theirs = deliver(services, org, 1)
    deliver(services, hidden, 1)

    snapshot = _ok(client, headers)

    assert sorted(_ops(snapshot)) == sorted(("upsert", i) for i in mine + theirs)
    assert snapshot["more"] is False and snapshot["removed_mailboxes"] == []
    sent = next(c["message"] for c in snapshot["changes"] if c["message"]["id"] == mine[2])
    assert sent["folder"] == "Sent" and sent["mailbox_id"] == own
    assert sent["subject"] == "Compte rendu 0" and sent["seen"] is False


def test_nothing_changed_gives_no_changes(client, services) -> None:
    username, headers = sign_in(client, services)
    deliver(services, make_mailbox(services, member=username), 2)
    state = _ok(client, headers)["state"]

    again = _ok(client, headers, state)

    assert again["changes"] == [] and again["more"] is False


def test_new_mail_a_flag_change_and_an_expunge_come_as_upserts_and_a_delete(
    client, services
) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    read, expunged, _untouched = deliver(services, mailbox, 3)
    state = _ok(client, headers)["state"]

    (arrived,) = deliver(services, mailbox, 1)
    mark_seen(services, read)
    expunge(services, [expunged])
    delta = _ok(client, headers, state)

    assert sorted(_ops(delta)) == sorted(
        [("upsert", arrived), ("upsert", read), ("delete", expunged)]
    )
    flagged = next(c["message"] for c in delta["changes"] if c["message"]["id"] == read)
    assert flagged["seen"] is True
    gone = next(c["message"] for c in delta["changes"] if c["op"] == "delete")
    assert gone == {"id": expunged, "mailbox_id": mailbox}
    assert _ok(client, headers, delta["state"])["changes"] == []


def test_a_folder_emptied_on_the_desktop_leaves_in_chunks_with_one_read_push(
    client, services
) -> None:
    """More ids than one IN list should carry; the badge push is one, not one per mail."""
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    *emptied, kept = deliver(services, mailbox, store.IN_CHUNK * 2 + 501)
    _snapshot, state, _pages = _all_changes(client, headers)

    expunge(services, emptied)
    ops, _state, _pages = _all_changes(client, headers, state)

    assert sorted(ops) == sorted(("delete", gone) for gone in emptied)
    with services.sessions() as db:
        mailbox_pk = db.scalar(select(Mailbox.id).where(Mailbox.public_id == mailbox))
        kinds = db.scalars(select(OutboxEvent.kind).where(OutboxEvent.mailbox_id == mailbox_pk))
        assert list(kinds) == ["mail.read"]
    page = client.get(f"/api/v1/mailboxes/{mailbox}/messages", headers=headers)
    assert [m["id"] for m in body(page)["items"]] == [kept]


def test_a_uidvalidity_reset_deletes_the_old_ids_and_upserts_the_new_ones(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    before = deliver(services, mailbox, 2)
    state = _ok(client, headers)["state"]

    with session_scope(services.sessions) as db:
        folder_id = db.scalar(select(Folder.id).join(Mailbox).where(Mailbox.public_id == mailbox))
        store.reset_folder(db=db, folder_id=folder_id, uidvalidity=4242)
    after = deliver(services, mailbox, 2)
    delta = _ok(client, headers, state)

    assert sorted(_ops(delta)) == sorted(
        [("delete", i) for i in before] + [("upsert", i) for i in after]
    )


def test_a_big_snapshot_comes_in_pages_that_together_hold_each_message_once(
    client, services
) -> None:
    username, headers = sign_in(client, services)
    first = make_mailbox(services, member=username)
    second = make_mailbox(services, member=username, role="delegate", kind="ORG")
    stored = []
    for _ in range(5):  # store batches of 3: one change number each
        stored += deliver(services, first, 3) + deliver(services, second, 2)

    ops, state, pages = _all_changes(client, headers, limit=4)

    seen = [message_id for _op, message_id in ops]
    assert sorted(seen) == sorted(stored) and len(seen) == len(stored)
    assert pages > 3
    assert _ok(client, headers, state)["changes"] == []


def test_a_state_older_than_the_kept_tombstones_cannot_calculate_changes(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    doomed = deliver(services, mailbox, 2)
    old_state = _ok(client, headers)["state"]
    expunge(services, doomed)
    with session_scope(services.sessions) as db:
        change_log.purge_tombstones(db, older_than=utcnow() + timedelta(seconds=1))

    response = _sync(client, headers, old_state)

    assert response.status_code == 400
    assert body(response)["code"] == "cannot_calculate_changes"
    fresh = _ok(client, headers)
    assert fresh["changes"] == [] and _ok(client, headers, fresh["state"])["changes"] == []


def test_a_tampered_state_or_another_users_state_is_a_validation_error(client, services) -> None:
    username, headers = sign_in(client, services)
    _other, other_headers = sign_in(client, services)
    deliver(services, make_mailbox(services, member=username), 1)
    state = _ok(client, headers)["state"]
    raw = bytearray(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)))
    raw[-1] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")

    for who, bad in ((headers, tampered), (headers, "garbage"), (other_headers, state)):
        response = _sync(client, who, bad)
        assert response.status_code == 422, bad
        assert body(response)["code"] == "validation_error"
        assert "since" in body(response)["errors"]


def test_a_lost_delegation_is_reported_and_the_mailbox_leaks_nothing_more(client, services) -> None:
    owner, _ = sign_in(client, services)
    secretary, headers = sign_in(client, services)
    org = make_mailbox(services, member=owner, kind="ORG")
    deliver(services, org, 1)
    grant(services, org, secretary)
    state = _ok(client, headers)["state"]

    revoke(services, org, secretary)
    deliver(services, org, 1, subject="Après le départ")
    delta = _ok(client, headers, state)

    assert delta["changes"] == []
    assert delta["removed_mailboxes"] == [org]
    assert _ok(client, headers, delta["state"])["removed_mailboxes"] == []


def test_a_new_delegation_brings_the_whole_mailbox_in(client, services) -> None:
    owner, _ = sign_in(client, services)
    secretary, headers = sign_in(client, services)
    org = make_mailbox(services, member=owner, kind="ORG")
    already = deliver(services, org, 2)
    state = _ok(client, headers)["state"]

    grant(services, org, secretary)
    delta = _ok(client, headers, state)

    assert sorted(_ops(delta)) == sorted(("upsert", i) for i in already)


def test_handing_out_envelopes_is_audited_with_ids_and_counts_only(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    deliver(services, mailbox, 2, subject="CANARY Mme DUPONT Jeanne")
    state = _ok(client, headers)["state"]
    _ok(client, headers, state)  # nothing new: nothing handed out, nothing recorded

    with services.sessions() as db:
        records = db.scalars(select(AuditRecord).where(AuditRecord.action == "mailbox.sync")).all()
        trail = " ".join(f"{r.target} {r.mailbox} {r.details}" for r in records)

    assert len(records) == 1
    assert records[0].mailbox == mailbox and records[0].actor != "anonymous"
    assert json.loads(records[0].details) == {"deletes": 0, "upserts": 2}
    assert "CANARY" not in trail and "DUPONT" not in trail
