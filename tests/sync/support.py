"""What the sync specifications share: a worker in a thread, mail to deliver, cache probes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from imapclient import IMAPClient
from sqlalchemy import func, select

from backend.storage.models import Mailbox, Message, OutboxEvent
from backend.sync.worker import SyncWorker
from devtools.drills.sync_harness import mail as mail  # shared with bench/faults.py
from tests.support import wait_until


@contextlib.contextmanager
def desktop_client(dovecot: Any, address: str, password: str) -> Iterator[IMAPClient]:
    """The user's desktop mail client, on the INBOX: the other way into the mailbox."""
    with IMAPClient(
        dovecot.host, port=dovecot.imaps_port, ssl_context=dovecot.client_ssl_context()
    ) as desktop:
        desktop.login(address, password)
        desktop.select_folder("INBOX")
        yield desktop


class RunningWorker:
    """A SyncWorker on a thread for the duration of a `with` block; stopped cleanly after."""

    def __init__(self, services: Any) -> None:
        self.worker = SyncWorker(services.sessions, services.settings, pool_size=4)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> SyncWorker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the sync worker did not stop"


def sync_state(services: Any, public_id: str) -> tuple[str, str | None]:
    with services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == public_id))
        return mailbox.sync_state, mailbox.sync_detail


def subjects(services: Any, public_id: str) -> list[str]:
    with services.sessions() as db:
        mailbox_id = db.scalar(select(Mailbox.id).where(Mailbox.public_id == public_id))
        return sorted(
            m.subject for m in db.scalars(select(Message).where(Message.mailbox_id == mailbox_id))
        )


def wait_for_recovery(services: Any, public_id: str, expected: list[str], what: str) -> None:
    """After a failure: the mail that came meanwhile in the cache, and the state `ok` again."""
    wait_until(lambda: subjects(services, public_id) == expected, timeout=30, what=what)
    wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="state ok again")


def outbox_count(services: Any, public_id: str, kind: str = "mail.new") -> int:
    with services.sessions() as db:
        mailbox_id = db.scalar(select(Mailbox.id).where(Mailbox.public_id == public_id))
        return db.scalar(
            select(func.count(OutboxEvent.id)).where(
                OutboxEvent.mailbox_id == mailbox_id, OutboxEvent.kind == kind
            )
        )
