"""Push throughput: the outbox drained through one dispatcher into a local FCM server.

Creates a fresh PostgreSQL database with N users, each with one device and one mailbox
holding one unread message, and one `mail.new` outbox row per mailbox: N pushes, the
worst case for the dispatcher (no fan-out to share the per-event work). One Dispatcher
(firebase-admin's send_each_async underneath) drains it into the local FCM v1 server,
which runs in a process of its own so it does not share our GIL.

In the same run, the naive peer: a plain loop of `messaging.send()` (one blocking HTTP
request at a time), on a sample, as a rate. `p99_queue_to_send_ms` is from the outbox
row's creation to FCM's answer being recorded; the whole backlog is written before the
dispatcher starts, so it is close to the drain time of N pushes by construction.
`live_p*_queue_to_send_ms` is the same figure for mail arriving one message at a time.

Google answers in tens of milliseconds, loopback in well under one, and the two say
different things, so both are measured, each against its own local server:
- the top-level figures: every FCM answer delayed by `--latency-ms` (20), standing in for
  the round trip to Google. This is what the naive loop pays per push in production.
- `loopback`: answers at once. Nothing to overlap, so it measures our CPU per push, and
  the naive loop is as fast as its own CPU allows.
Prints one JSON line.

    .venv/bin/python -m bench.push_throughput --devices 20000 [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from backend.storage.models import OutboxEvent
from bench.scratch import ScratchDatabase, gateway_env

ROOT = Path(__file__).resolve().parent.parent
NAIVE_SAMPLE = 500
LIVE_SAMPLE = 200


def _serve_fcm(sa_path: str, latency: float, ready, stop) -> None:
    """The local FCM server, in its own process: writes the service account, then serves."""
    from devtools.fcm_server import FakeFcm

    with FakeFcm(latency=latency) as fake:
        fake.write_service_account(Path(sa_path))
        ready.send(fake.base_url)
        stop.wait()


def _fill(sessions, count: int) -> list[int]:
    """N users, devices, mailboxes (with INBOX) and unread messages; returns mailbox ids."""
    from sqlalchemy import insert, select

    from backend.ids import new_id
    from backend.storage.models import (
        Device,
        Folder,
        Mailbox,
        Membership,
        Message,
        User,
        utcnow,
    )

    now = utcnow()
    tag = uuid.uuid4().hex[:6]
    with sessions() as db:
        db.execute(
            insert(User),
            [{"username": f"b{tag}{i}", "password_hash": "unused"} for i in range(count)],
        )
        users = list(db.scalars(select(User.id).order_by(User.id)))
        db.execute(
            insert(Mailbox),
            [
                {
                    "address": f"b{tag}{i}@chu-bench.mssante.fr",
                    "kind": "PER",
                    "imap_host": "imap.invalid",
                    "imap_port": 993,
                    "imap_security": "tls",
                    "imap_auth": "password",
                }
                for i in range(count)
            ],
        )
        mailboxes = list(db.scalars(select(Mailbox.id).order_by(Mailbox.id)))
        db.execute(
            insert(Folder),
            [{"mailbox_id": m, "name": "INBOX", "role": "inbox", "last_uid": 1} for m in mailboxes],
        )
        folders = dict(db.execute(select(Folder.mailbox_id, Folder.id)).all())
        db.execute(
            insert(Membership),
            [
                {"mailbox_id": m, "user_id": u, "role": "owner"}
                for m, u in zip(mailboxes, users, strict=True)
            ],
        )
        token = Device.sealed_field("push_token")  # sealed for its row, as the app does
        device_ids = [new_id("dev") for _ in users]
        db.execute(
            insert(Device),
            [
                {
                    "public_id": d,
                    "user_id": u,
                    "name": "bench",
                    "platform": "android",
                    "_push_token": token.seal(d, f"bench-token-{u}-{uuid.uuid4().hex}"),
                    "push_token_updated_at": now,
                }
                for d, u in zip(device_ids, users, strict=True)
            ],
        )
        db.execute(
            insert(Message),
            [
                {"mailbox_id": m, "folder_id": folders[m], "uid": 1, "sort_key": now}
                for m in mailboxes
            ],
        )
        db.commit()
    return mailboxes


def _messages(sessions) -> dict[int, int]:
    """The one message of each mailbox."""
    from backend.storage.models import Message

    with sessions() as db:
        return dict(db.execute(select(Message.mailbox_id, Message.id)).all())


def _announce_all(sessions, mailboxes: list[int], message_of: dict[int, int]) -> None:
    """The backlog: one mail.new per mailbox, written as sync would, in chunks."""
    from backend.push import outbox

    for start in range(0, len(mailboxes), 1000):
        with sessions() as db:
            for mailbox_id in mailboxes[start : start + 1000]:
                outbox.announce_new(db, mailbox_id=mailbox_id, message_id=message_of[mailbox_id])
            db.commit()


def _pending(sessions) -> int:
    from sqlalchemy import func, select

    from backend.storage.models import OutboxEvent

    with sessions() as db:
        return db.scalar(select(func.count(OutboxEvent.id)).where(OutboxEvent.done_at.is_(None)))


def _wait_until_drained(sessions) -> None:
    """Polls seldom: this process is the dispatcher's too, and a poll costs it the GIL."""
    while _pending(sessions):
        time.sleep(0.25)


def _last_sent_at(sessions, since_id: int) -> datetime:
    """When the last push was recorded: the drain's end, whatever the polling interval."""
    from backend.storage.models import PushDelivery

    with sessions() as db:
        return db.scalar(
            select(func.max(PushDelivery.sent_at)).where(PushDelivery.outbox_id > since_id)
        )


def _queue_to_send_ms(sessions, since_id: int) -> list[float]:
    from sqlalchemy import select

    from backend.storage.models import OutboxEvent, PushDelivery

    with sessions() as db:
        rows = db.execute(
            select(PushDelivery.sent_at, OutboxEvent.created_at)
            .join(OutboxEvent, OutboxEvent.id == PushDelivery.outbox_id)
            .where(OutboxEvent.id > since_id, PushDelivery.status == "ok")
        ).all()
    return sorted((sent - created) / timedelta(milliseconds=1) for sent, created in rows)


def _p99(values: list[float]) -> float:
    return values[max(0, int(len(values) * 0.99) - 1)]


def _naive_rate(sa_path: str, base_url: str) -> float:
    """A plain loop of messaging.send(): one blocking request at a time."""
    import firebase_admin
    from firebase_admin import credentials, messaging

    from backend.push import payloads
    from backend.push.fcm_transport import install_transport

    app = firebase_admin.initialize_app(credentials.Certificate(sa_path), name="bench-naive")
    try:
        install_transport(app, base_url, timeout=10, max_in_flight=1)
        messages = [
            payloads.new_mail(f"naive-{i}", "mbx_bench", 1) for i in range(NAIVE_SAMPLE + 1)
        ]
        messaging.send(messages[0], app=app)  # token fetch and first connection, not timed
        started = time.perf_counter()
        for message in messages[1:]:
            messaging.send(message, app=app)
        return NAIVE_SAMPLE / (time.perf_counter() - started)
    finally:
        firebase_admin.delete_app(app)


def _last_outbox_id(sessions) -> int:
    with sessions() as db:
        return db.scalar(select(func.max(OutboxEvent.id))) or 0


def _measure(sessions, mailboxes, message_of, fcm: _LocalFcm) -> dict:
    """One dispatcher drains a backlog of one push per device, then live mail, into `fcm`;
    the naive loop goes to the same server."""
    from backend.push.dispatcher import Dispatcher
    from backend.push.fcm import FcmSender
    from backend.storage.models import utcnow

    naive = _naive_rate(fcm.service_account, fcm.base_url)
    since = _last_outbox_id(sessions)
    _announce_all(sessions, mailboxes, message_of)
    _analyze(sessions)
    with FcmSender(fcm.service_account, fcm.base_url) as sender:
        halt = threading.Event()
        started = utcnow()
        worker = threading.Thread(
            target=Dispatcher(sessions, sender).run, args=(halt,), daemon=True
        )
        worker.start()
        try:
            _wait_until_drained(sessions)
            drained = (_last_sent_at(sessions, since) - started).total_seconds()
            backlog = _queue_to_send_ms(sessions, since)
            # Live: mail arriving one message at a time.
            since = _last_outbox_id(sessions)
            for mailbox_id in mailboxes[:LIVE_SAMPLE]:
                _announce_all(sessions, [mailbox_id], message_of)
                time.sleep(0.01)
            _wait_until_drained(sessions)
            live = _queue_to_send_ms(sessions, since)
        finally:
            halt.set()
            worker.join(timeout=30)
    rate = len(backlog) / drained
    return {
        "pushes_per_s": round(rate, 1),
        "p99_queue_to_send_ms": round(_p99(backlog), 1),
        "naive_pushes_per_s": round(naive, 1),
        "speedup": round(rate / naive, 1),
        "drain_s": round(drained, 2),
        "live_p50_queue_to_send_ms": round(live[len(live) // 2], 1),
        "live_p99_queue_to_send_ms": round(_p99(live), 1),
        "fcm_latency_ms": fcm.latency_ms,
    }


def _analyze(sessions) -> None:
    """A live database has planner statistics (autovacuum); a freshly filled one has none
    until autovacuum's next round, and the planner then scans every device per push."""
    with sessions() as db:
        db.execute(text("ANALYZE"))
        db.commit()


class _LocalFcm:
    """A local FCM server in a process of its own, answering after `latency_ms`."""

    def __init__(self, context, workdir: str, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self.service_account = str(Path(workdir) / f"service-account-{latency_ms:g}.json")
        ours, theirs = context.Pipe()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve_fcm,
            args=(self.service_account, latency_ms / 1000, theirs, self._stop),
            daemon=True,
        )
        self._process.start()
        self.base_url = ours.recv()

    def close(self) -> None:
        self._stop.set()
        self._process.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=20.0,
        help="delay of every FCM answer, standing in for the round trip to Google",
    )
    args = parser.parse_args()

    database = ScratchDatabase("push")
    os.environ.update(
        {
            **gateway_env(database.url),
        }
    )
    context = multiprocessing.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="estafette-bench-push-")
    servers = [_LocalFcm(context, workdir, args.latency_ms), _LocalFcm(context, workdir, 0.0)]
    engine = None
    try:
        from backend.config import load_settings
        from backend.storage.database import make_engine, make_session_factory, upgrade_schema
        from backend.storage.encryption import set_data_key

        settings = load_settings()
        set_data_key(settings.data_key)
        engine = make_engine(settings.database_url)
        upgrade_schema(engine)
        sessions = make_session_factory(engine)
        mailboxes = _fill(sessions, args.devices)
        message_of = _messages(sessions)
        # The messages stay unread, so the second backlog rings the same devices again.
        remote, loopback = (_measure(sessions, mailboxes, message_of, s) for s in servers)
    finally:
        for server in servers:
            server.close()
        if engine is not None:
            engine.dispose()
        database.drop()

    print(
        json.dumps(
            {
                "devices": args.devices,
                **remote,
                "loopback": loopback,
                "naive_sample": NAIVE_SAMPLE,
                "database": "postgresql",
            }
        )
    )


if __name__ == "__main__":
    main()
