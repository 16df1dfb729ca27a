"""Group commit: concurrent appends share transactions, and the chain stays whole.

Each caller gets back only once its own records committed; a batch that fails fails for
every caller in it, and the next batch is written all the same.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from backend.audit.group_commit import GroupCommit
from backend.audit.trail import Actor, verify_chain
from backend.storage.models import AuditRecord


def test_concurrent_calls_each_get_their_records_chained_once(services) -> None:
    start = threading.Barrier(8)
    chained: dict[int, list[int]] = {}

    def call(n: int) -> None:
        start.wait()
        for _ in range(10):
            main = services.audit.entry("mailbox.list", actor=Actor(f"usr_{n}"))
            more = services.audit.entry("mailbox.sync", actor=Actor(f"usr_{n}"))
            services.audit.append([main, more])
            # Visible (committed) the moment append returns, one after the other.
            with services.sessions() as db:
                assert db.get(AuditRecord, more.id) is not None
            assert more.id == main.id + 1 and more.prev_hash == main.hash
            chained.setdefault(n, []).extend([main.id, more.id])

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [i for n in chained for i in chained[n]]
    assert len(ids) == len(set(ids)) == 160
    with services.sessions() as db:
        assert db.scalar(select(func.count()).select_from(AuditRecord)) == 160
        result = verify_chain(db)
    assert result.ok and result.records == 160


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_is_written() -> None:
    written: list[list[str]] = []
    release = threading.Event()

    def write(items: list[str]) -> int:
        if "first" in items:
            release.wait(5)  # hold the first batch so that the others queue behind it
        if "bad" in items:
            raise OSError("disk full")
        written.append(items)
        return len(items)

    group: GroupCommit[str, int] = GroupCommit(write)
    outcomes: dict[str, object] = {}

    def submit(name: str) -> None:
        try:
            outcomes[name] = group.submit([name])
        except OSError as exc:
            outcomes[name] = exc

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    while not group._writing:  # the first batch is under way
        pass
    queued = [threading.Thread(target=submit, args=(n,)) for n in ("bad", "other")]
    for thread in queued:
        thread.start()
    while len(group._queue) < 2:  # both wait behind the first
        pass
    release.set()
    for thread in (first, *queued):
        thread.join(5)

    assert outcomes["first"] == 1
    # "bad" and "other" were one batch: it failed, for both of them.
    assert isinstance(outcomes["bad"], OSError) and isinstance(outcomes["other"], OSError)
    assert written == [["first"]]
    assert group.submit(["after"]) == 1
    assert written == [["first"], ["after"]]


@pytest.mark.parametrize("count", [1, 3])
def test_a_lone_caller_writes_at_once(count: int) -> None:
    group: GroupCommit[int, list[int]] = GroupCommit(lambda items: items)
    assert group.submit(list(range(count))) == list(range(count))


def test_a_batch_the_database_refuses_leaves_the_chain_whole_and_the_writer_usable(
    services,
) -> None:
    services.audit.append([services.audit.entry("mailbox.list", actor=Actor("usr_a"))])
    refused = services.audit.entry("mailbox.list", actor=Actor(None))  # type: ignore[arg-type]
    with pytest.raises(DBAPIError):  # NOT NULL: the database refuses the whole batch
        services.audit.append([refused])
    services.audit.append([services.audit.entry("mailbox.list", actor=Actor("usr_c"))])
    with services.sessions() as db:
        actors = db.scalars(select(AuditRecord.actor).order_by(AuditRecord.id)).all()
        result = verify_chain(db)
    assert actors == ["usr_a", "usr_c"]
    assert result.ok and result.records == 2


def test_concurrent_api_calls_leave_one_record_each_on_a_chain_that_verifies(app, services) -> None:
    from tests.mailboxes.support import deliver, make_mailbox, sign_in

    username, auth = sign_in(app.test_client(), services)
    mailbox = make_mailbox(services, member=username)
    deliver(services, mailbox, 3)
    start = threading.Barrier(6)
    statuses: list[int] = []

    def calls() -> None:
        client = app.test_client()
        start.wait()
        for _ in range(5):
            listing = client.get(f"/api/v1/mailboxes/{mailbox}/messages", headers=auth)
            sync = client.get("/api/v1/sync", headers=auth)
            statuses.extend([listing.status_code, sync.status_code])

    threads = [threading.Thread(target=calls) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 60
    with services.sessions() as db:
        counted = dict(
            db.execute(
                select(AuditRecord.action, func.count())
                .where(AuditRecord.action.in_(["mailbox.list", "sync.read"]))
                .group_by(AuditRecord.action)
            ).all()
        )
        result = verify_chain(db)
    assert counted == {"mailbox.list": 30, "sync.read": 30}
    assert result.ok
