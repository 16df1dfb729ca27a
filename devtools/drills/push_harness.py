"""The push side of the fault drills (issue 21): the operator's processes, broken on purpose.

`flask --app mobile_api push` and `... sync` run as real processes on PostgreSQL, against
the local FCM (`FakeFcm`, which can fail every send) and, for sync, a real Dovecot. A
drill queues mail, breaks something (SIGKILL, an FCM storm, a burst), and `tally` counts,
per device, the pushes expected, received, lost and duplicated.

The specifications (`test_push_drills.py`) and `bench/faults.py` both drive these; the
bench at larger counts. Everything public here is what the bench may use.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
from sqlalchemy import func, select

from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.database import make_engine, make_session_factory, upgrade_schema
from backend.storage.encryption import set_data_key
from backend.storage.models import Mailbox, OutboxEvent, utcnow
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm, RecordedRequest

__all__ = [
    "Clock",
    "DrillGateway",
    "EmptyDatabase",
    "FakeFcm",
    "Tally",
    "p99",
    "scratch_database",
    "simulate_outage",
    "tally",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "ESTAFETTE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1/test"
)
SECRET_KEY = "drill-secret-key-that-is-long-enough-for-eddsa-derivation"
DATA_KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="  # base64 of 32 x "k"


class EmptyDatabase:
    """A PostgreSQL database of our own on the machine's server, until `drop()` (benches
    keep it across a try/finally of their own)."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self._admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
        self._admin.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


@contextlib.contextmanager
def scratch_database(prefix: str = "estafette_drill") -> Iterator[str]:
    """A migrated database of our own, dropped at the end (drills, the test suite's session
    database)."""
    database = EmptyDatabase(prefix)
    try:
        engine = make_engine(database.url)
        upgrade_schema(engine)
        engine.dispose()
        yield database.url
    finally:
        database.drop()


@dataclass
class Tally:
    """One device's account of a drill."""

    expected: int = 0
    received: int = 0  # distinct expected pushes FCM accepted
    lost: int = 0
    duplicated: int = 0  # the same news (mailbox, unread count) accepted again


def tally(requests: list[RecordedRequest], expected: set[tuple[str, str]]) -> dict[str, Tally]:
    """Per device token: of the (mailbox public id, token) pushes expected, what happened.

    A burst may rightly bring several pushes for one mailbox, each with a newer count; a
    duplicate is the same count for the same mailbox accepted twice (a resend)."""
    accepted = [r for r in requests if r.status == 200]
    news = Counter((r.data.get("mailbox"), r.token) for r in accepted)
    repeats = Counter((r.data.get("mailbox"), r.token, r.data.get("unread")) for r in accepted)
    per_device: dict[str, Tally] = defaultdict(Tally)
    for mailbox, token in expected:
        account = per_device[token]
        account.expected += 1
        if news.get((mailbox, token)):
            account.received += 1
        else:
            account.lost += 1
    for (mailbox, token, _unread), count in repeats.items():
        if (mailbox, token) in expected:
            per_device[token].duplicated += count - 1
    return dict(per_device)


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank), 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


class Clock:
    """UTC time that moves only when told: a ten-minute outage in seconds."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class DrillGateway:
    """A database, a local FCM, and the operator's processes on them."""

    def __init__(
        self,
        database_url: str,
        fcm: FakeFcm,
        workdir: Path,
        *,
        dovecot: Any = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.fcm = fcm
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dovecot = dovecot
        self.credentials = fcm.write_service_account(self.workdir / "service-account.json")
        set_data_key(base64.urlsafe_b64decode(DATA_KEY))  # as the processes will
        self.engine = make_engine(database_url)
        self.sessions = make_session_factory(self.engine)
        self.world = World(SimpleNamespace(sessions=self.sessions))
        self.env = {
            **os.environ,
            "ESTAFETTE_DATABASE_URL": database_url,
            "ESTAFETTE_SECRET_KEY": SECRET_KEY,
            "ESTAFETTE_DATA_KEY": DATA_KEY,
            "ESTAFETTE_VAR_DIR": str(self.workdir / "var"),
            "ESTAFETTE_NIL": "drill-nil",
            "ESTAFETTE_FCM_CREDENTIALS": str(self.credentials),
            "ESTAFETTE_FCM_ENDPOINT": fcm.base_url,
            "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path) if dovecot else "system",
            **(extra_env or {}),
        }
        self._processes: list[subprocess.Popen] = []
        self._logs: dict[int, Path] = {}
        self._user: int | None = None

    # -- the world ------------------------------------------------------------------------

    @property
    def user(self) -> int:
        if self._user is None:
            self._user = self.world.user()
        return self._user

    def devices(self, count: int) -> list[str]:
        """`count` phones of the drill's user; their push tokens."""
        return self.world.devices(self.user, count)

    def mailboxes(self, count: int) -> list[tuple[int, str]]:
        """`count` mailboxes of the user (no IMAP server behind): (id, public id)."""
        return [self.world.mailbox(self.user) for _ in range(count)]

    def queue_mail(self, mailbox_id: int) -> None:
        """A new message and its outbox row, as the sync worker writes them."""
        self.world.new_mail(mailbox_id)

    def queue_burst(self, mailbox_id: int, count: int, per_transaction: int = 500) -> None:
        """`count` new messages into one mailbox at once, committed as sync commits a
        large catch-up: many per transaction, each with its outbox row."""
        from backend.push import outbox
        from backend.storage.database import session_scope
        from backend.storage.models import Folder, Message

        with self.sessions() as db:
            folder_id = db.scalar(
                select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == "INBOX")
            )
            uid = db.scalar(select(func.max(Message.uid)).where(Message.folder_id == folder_id))
        uid = uid or 0
        for start in range(0, count, per_transaction):
            with session_scope(self.sessions) as db:
                for _ in range(min(per_transaction, count - start)):
                    uid += 1
                    message = Message(
                        mailbox_id=mailbox_id,
                        folder_id=folder_id,
                        uid=uid,
                        sort_key=utcnow(),
                        subject="Compte rendu",
                        sender={"name": "Dr Martin", "address": "martin@ch.mssante.fr"},
                    )
                    db.add(message)
                    db.flush()
                    outbox.announce_new(db, mailbox_id=mailbox_id, message_id=message.id)

    def imap_mailbox(self) -> tuple[str, str]:
        """A Dovecot user and the matching mailbox of the drill's user: (address, public id)."""
        from backend.mailboxes import registry
        from backend.storage.database import session_scope
        from backend.storage.models import Membership

        address = f"drill.{uuid.uuid4().hex[:8]}@chu-test.mssante.fr"
        password = uuid.uuid4().hex
        self.dovecot.add_user(address, password)
        with session_scope(self.sessions) as db:
            mailbox = registry.create_mailbox(
                db=db,
                address=address,
                kind="PER",
                imap=registry.ServerSettings(
                    self.dovecot.host, self.dovecot.imaps_port, "tls", "password", address, password
                ),
            )
            db.add(Membership(mailbox_id=mailbox.id, user_id=self.user, role="owner"))
            db.flush()
            return address, mailbox.public_id

    def first_push_after(self, expected: set[tuple[str, str]], since: float) -> list[float]:
        """Per expected (mailbox, token), seconds from `since` (epoch) to its first push
        accepted after it."""
        first: dict[tuple[str, str | None], float] = {}
        for request in self.fcm.requests:
            key = (request.data.get("mailbox"), request.token)
            if request.status == 200 and key in expected and request.received_at >= since:
                first.setdefault(key, request.received_at - since)
        return list(first.values())

    def deliver(self, address: str, subject: str = "Compte rendu") -> None:
        """A message into a Dovecot mailbox by LMTP, as the operator's MTA would."""
        from email.message import EmailMessage

        message = EmailMessage()
        message["From"] = "Dr Test <test@ch-exemple.mssante.fr>"
        message["To"] = address
        message["Subject"] = subject
        message.set_content("Corps du message.")
        self.dovecot.deliver(address, bytes(message))

    def pending(self) -> int:
        with self.sessions() as db:
            return db.scalar(select(func.count()).where(OutboxEvent.done_at.is_(None))) or 0

    def in_idle(self) -> bool:
        with self.sessions() as db:
            return set(db.scalars(select(Mailbox.sync_state))) == {"ok"}

    def queued_at(self) -> dict[str, float]:
        """Per mailbox public id, when its oldest push was queued (epoch seconds)."""
        with self.sessions() as db:
            rows = db.execute(
                select(Mailbox.public_id, func.min(OutboxEvent.created_at))
                .join(OutboxEvent, OutboxEvent.mailbox_id == Mailbox.id)
                .group_by(Mailbox.public_id)
            ).all()
        return {public_id: created.timestamp() for public_id, created in rows}

    def latencies(self) -> list[float]:
        """Seconds from queueing to FCM's acceptance, per first accepted push."""
        queued = self.queued_at()
        first: dict[tuple[str, str | None], float] = {}
        for request in self.fcm.requests:
            key = (request.data.get("mailbox"), request.token)
            if request.status == 200 and key not in first and key[0] in queued:
                first[key] = request.received_at - queued[key[0]]
        return list(first.values())

    # -- processes ------------------------------------------------------------------------

    def start(self, command: str, *options: str) -> subprocess.Popen:
        """`flask --app mobile_api <command>`, as an operator (or systemd) starts it."""
        path = self.workdir / f"{command}-{len(self._processes)}.log"
        log = path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "mobile_api", command, *options],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self._processes.append(process)
        self._logs[process.pid] = path
        return process

    def wait_ready(self, process: subprocess.Popen, timeout: float = 60.0) -> float:
        """Until the process logs that its loop is starting (imports and schema check done,
        which take seconds on a loaded machine); the seconds it took."""
        path = self._logs[process.pid]
        return wait_for(
            lambda: " starting" in path.read_text(errors="replace"),
            timeout=timeout,
            what=f"{path.name} to start",
        )

    def log_lines(self, process: subprocess.Popen) -> list[str]:
        return self._logs[process.pid].read_text(errors="replace").splitlines()

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL: no handler runs, no lease is given back."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.engine.dispose()

    def __enter__(self) -> DrillGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def everything_received(
    gateway: DrillGateway, expected: set[tuple[str, str]]
) -> Callable[[], bool]:
    """A condition: every expected (mailbox, token) has had a push."""

    def check() -> bool:
        accounts = tally(gateway.fcm.requests, expected)
        return all(account.lost == 0 for account in accounts.values())

    return check


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll until `predicate()` holds; seconds it took. AssertionError at the deadline."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def simulate_outage(
    gateway: DrillGateway, *, devices: int, mailboxes: int, minutes: float = 10.0
) -> dict[str, Any]:
    """An FCM outage of `minutes` lived by an in-process dispatcher on a simulated clock.

    Mail is queued as the outage starts; FCM answers 503 to everything until it ends.
    Returns the tally, the requests FCM saw during the outage, and the simulated seconds
    from its end to the last push.
    """
    tokens = gateway.devices(devices)
    boxes = gateway.mailboxes(mailboxes)
    gateway.fcm.fail_all("unavailable")
    for mailbox_id, _public_id in boxes:
        gateway.queue_mail(mailbox_id)
    expected = {(public_id, token) for _id, public_id in boxes for token in tokens}
    clock = Clock()
    with FcmSender(gateway.credentials, gateway.fcm.base_url) as sender:
        dispatcher = Dispatcher(gateway.sessions, sender, clock=clock)
        ends = clock.now + timedelta(minutes=minutes)
        while clock.now < ends:
            dispatcher.drain()
            clock.advance(1)
        during = len(gateway.fcm.requests)
        gateway.fcm.fail_all(None)
        healed = clock.now
        give_up = healed + timedelta(minutes=5)
        while gateway.pending() and clock.now < give_up:
            dispatcher.drain()
            clock.advance(1)
    return {
        "tally": tally(gateway.fcm.requests, expected),
        "requests_during_outage": during,
        "recovery_s": (clock.now - healed).total_seconds(),
    }
