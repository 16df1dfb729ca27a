"""GET /mailboxes and GET /mailboxes/{id}/messages: what a user may see, and keyset pages."""

from __future__ import annotations

import base64
from datetime import timedelta

from sqlalchemy import event, select, text

from backend.mailboxes import listings
from backend.storage.models import Mailbox
from tests.mailboxes.support import EPOCH, deliver, grant, make_mailbox, mark_seen, revoke, sign_in
from tests.support import body


def _messages(client, headers, mailbox_id, **params):
    return client.get(
        f"/api/v1/mailboxes/{mailbox_id}/messages", headers=headers, query_string=params
    )


def _all_pages(client, headers, mailbox_id, limit):
    ids, cursor = [], None
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = body(_messages(client, headers, mailbox_id, **params))
        ids += [m["id"] for m in page["items"]]
        cursor = page["next"]
        if cursor is None:
            return ids


def test_the_list_shows_own_and_delegated_mailboxes_with_role_counts_and_sync_state(
    client, services
) -> None:
    username, headers = sign_in(client, services)
    own = make_mailbox(services, member=username)
    secretariat = make_mailbox(services, member=username, role="delegate", kind="ORG")
    make_mailbox(services)  # somebody else's
    first, *_ = deliver(services, own, 3)
    mark_seen(services, first)
    deliver(services, own, 2, folder="Archives")  # other folders are not counted

    listed = {m["id"]: m for m in body(client.get("/api/v1/mailboxes", headers=headers))}

    assert set(listed) == {own, secretariat}
    assert listed[own]["role"] == "owner" and listed[own]["kind"] == "PER"
    assert (listed[own]["unread"], listed[own]["total"]) == (2, 3)
    assert listed[secretariat]["role"] == "delegate" and listed[secretariat]["kind"] == "ORG"
    assert (listed[secretariat]["unread"], listed[secretariat]["total"]) == (0, 0)
    assert listed[own]["sync"] == {"state": "connecting", "detail": None}


def test_messages_come_newest_first_in_pages_that_chain_to_the_end(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    stored = deliver(services, mailbox, 7)

    first = body(_messages(client, headers, mailbox, limit=3))

    assert [m["id"] for m in first["items"]] == stored[::-1][:3]
    assert first["items"][0]["subject"] == "Compte rendu 6"
    assert first["items"][0]["mailbox_id"] == mailbox and first["items"][0]["folder"] == "INBOX"
    assert first["next"] is not None
    assert _all_pages(client, headers, mailbox, 3) == stored[::-1]


def test_messages_with_the_same_date_are_neither_lost_nor_repeated_across_pages(
    client, services
) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    stored = []
    for _ in range(5):  # five batches, all dated EPOCH
        stored += deliver(services, mailbox, 1)

    assert sorted(_all_pages(client, headers, mailbox, 2)) == sorted(stored)


def test_a_cursor_still_continues_where_it_was_after_new_mail_arrives(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    stored = deliver(services, mailbox, 6)
    first = body(_messages(client, headers, mailbox, limit=3))

    deliver(services, mailbox, 2, start=EPOCH + timedelta(days=1))  # newer than everything
    second = body(_messages(client, headers, mailbox, limit=3, cursor=first["next"]))

    assert [m["id"] for m in second["items"]] == stored[::-1][3:]
    assert second["next"] is None


def test_another_folder_is_listed_on_request_and_an_unknown_one_is_empty(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    deliver(services, mailbox, 2)
    archived = deliver(services, mailbox, 1, folder="Archives")

    archives = body(_messages(client, headers, mailbox, folder="Archives"))
    nowhere = body(_messages(client, headers, mailbox, folder="Nulle part"))

    assert [m["id"] for m in archives["items"]] == archived
    assert archives["items"][0]["folder"] == "Archives"
    assert nowhere == {"items": [], "next": None}


def test_a_tampered_or_foreign_cursor_is_a_validation_error(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)
    deliver(services, mailbox, 3)
    cursor = body(_messages(client, headers, mailbox, limit=1))["next"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-1] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")

    for bad in (tampered, "not-a-cursor", "A" * 40):
        response = _messages(client, headers, mailbox, cursor=bad)
        assert response.status_code == 422, bad
        assert body(response)["code"] == "validation_error"
        assert "cursor" in body(response)["errors"]


def test_a_limit_above_200_is_a_validation_error(client, services) -> None:
    username, headers = sign_in(client, services)
    mailbox = make_mailbox(services, member=username)

    response = _messages(client, headers, mailbox, limit=201)

    assert response.status_code == 422
    assert body(response)["code"] == "validation_error"


def test_another_users_mailbox_is_not_found_and_not_forbidden(client, services) -> None:
    _username, headers = sign_in(client, services)
    someone_else = make_mailbox(services, member=sign_in(client, services)[0])
    deliver(services, someone_else, 1)

    for mailbox_id in (someone_else, "mbx_doesnotexist"):
        response = _messages(client, headers, mailbox_id)
        assert response.status_code == 404
        assert body(response)["code"] == "not_found"


def test_a_delegate_reads_the_org_mailbox_until_the_delegation_is_removed(client, services) -> None:
    owner, _ = sign_in(client, services)
    secretary, headers = sign_in(client, services)
    org = make_mailbox(services, member=owner, kind="ORG")
    stored = deliver(services, org, 2)
    grant(services, org, secretary)

    assert [m["id"] for m in body(_messages(client, headers, org))["items"]] == stored[::-1]

    revoke(services, org, secretary)

    assert _messages(client, headers, org).status_code == 404
    assert body(client.get("/api/v1/mailboxes", headers=headers)) == []


def test_the_page_query_seeks_the_listing_index_without_sort_or_offset(services) -> None:
    """Page 1 and page 1000 cost the same: the index delivers rows in order from the cursor."""
    mailbox_id = make_mailbox(services)
    deliver(services, mailbox_id, 300)
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM messages" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    engine = services.engine
    postgres = engine.dialect.name == "postgresql"
    with services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == mailbox_id))
        _rows, key = listings.list_page(
            db=db, mailbox=mailbox, folder_name="INBOX", limit=50, after=None
        )
        event.listen(engine, "before_cursor_execute", capture)
        try:
            listings.list_page(db=db, mailbox=mailbox, folder_name="INBOX", limit=50, after=key)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        statement, parameters = statements[-1]
        assert "count(" not in statement.lower()
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            cur = raw.cursor()
            if postgres:
                cur.execute("ANALYZE messages")
                cur.execute("SET enable_seqscan = off")  # a 300-row table would be scanned
                cur.execute("EXPLAIN " + statement, parameters)
            else:
                cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = "\n".join(str(row) for row in cur.fetchall())
            cur.close()
            conn.execute(text("SELECT 1"))

    assert "ix_messages_listing" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    if postgres:
        seek = plan.split("ix_messages_listing")[1].split("Index Cond")[1]
        assert "sort_key" in seek.splitlines()[0], plan  # the cursor is a seek, not a filter
    else:
        assert "sort_key" in plan, plan


def test_unread_and_total_counts_come_from_the_index_alone(services) -> None:
    """GET /mailboxes stays fast on big mailboxes: counting never reads the message rows."""
    mailbox_id = make_mailbox(services)
    deliver(services, mailbox_id, 250, seen=True)
    deliver(services, mailbox_id, 50)
    engine = services.engine
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "count(" in statement.lower():
            statements.append((statement, parameters))

    with services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == mailbox_id))
        event.listen(engine, "before_cursor_execute", capture)
        try:
            counts = listings.counts_by_mailbox(db=db, mailbox_ids=[mailbox.id])
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        assert counts == {mailbox.id: (50, 300)}
    statement, parameters = statements[-1]
    with engine.connect() as conn:
        cur = conn.connection.driver_connection.cursor()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as vacuum:
                vacuum.exec_driver_sql("VACUUM ANALYZE messages")  # as autovacuum would
            # 300 rows: without these the planner would rightly just read them all.
            cur.execute("SET enable_seqscan = off")
            cur.execute("SET enable_bitmapscan = off")
            cur.execute("EXPLAIN " + statement, parameters)
        else:
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        plan = "\n".join(str(row) for row in cur.fetchall())
        cur.close()

    assert "ix_messages_unread" in plan, plan
    assert "Filter" not in plan, plan  # every condition is an index condition
