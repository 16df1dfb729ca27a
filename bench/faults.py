"""Fault drills at size (issue 21): what a kill, an outage, a storm or hostile mail costs.

The drills of `tests/drills/`, at larger counts, each on a fresh PostgreSQL database with
the local FCM (and a real Dovecot for sync):

- push_kill: 300 messages (one per mailbox) to 6 devices; `flask push` SIGKILLed once
  a third of the pushes reached a slow FCM; a replacement started at once, lease at its
  default. `recovery_s`: from the replacement being up to the last push.
- sync_kill: 10 Dovecot mailboxes in IDLE; `flask sync` SIGKILLed; 300 messages delivered
  meanwhile; a replacement started. `recovery_s`: from it being up to the last push.
- storm_503_retry_after, storm_500: FCM refuses everything for `--storm-seconds` while
  300 messages arrive. `recovery_s`: from the end of the storm to the last push.
- outage_10min_simulated: the same for ten minutes, on a simulated clock at the sender.
  `recovery_s` is simulated seconds; its `p99_push_latency_s` is wall-clock time of the
  simulation, not of the outage.
- burst: 5,000 messages into one mailbox at once. `recovery_s`: from the last commit to
  an empty outbox; `max_pushes_per_device` says how well it coalesced.
- dovecot_restart: 10 mailboxes in IDLE; Dovecot restarted under sync and push; 300
  messages delivered once it is back. `recovery_s`: from the restart to the last count.
- db_outage_45s, db_restart: the same 10 mailboxes on a PostgreSQL cluster of the bench's
  own, stopped for `--outage-seconds` (45) or restarted at once, 300 messages delivered
  meanwhile. `recovery_s`: from the database's return to the last count;
  `pushed_within_s`: the slowest device's first push after the return.
- first_import_kill: 3,000 old messages; `flask sync` SIGKILLed during their first import,
  one new message delivered, a replacement started. `old_announced` must be 0;
  `recovery_s`: from the replacement being up to the new mail's push to every device.
- hostile: the hostile corpus into one mailbox, then one ordinary message. `recovery_s`:
  from its delivery to its push to every device; `corpus_sync_s` (the whole corpus
  stored), `slowest_open_s` (one message opened as the API does), `sync_peak_rss_mb`.

`lost` and `duplicates` sum the per-device tallies; `p99_push_latency_s` runs from the
outbox row to FCM's acceptance of a mailbox's first push to each device. One JSON line.

    .venv/bin/python -m bench.faults
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.storage.database import make_engine, upgrade_schema
from backend.storage.models import Mailbox, Message, OutboxEvent, User
from devtools.corpus import hostile_corpus
from devtools.dovecot import DovecotServer
from devtools.drills.push_harness import (
    DrillGateway,
    FakeFcm,
    p99,
    scratch_database,
    simulate_outage,
    tally,
    wait_for,
)
from devtools.drills.sync_harness import ThrowawayPostgres, deliver_many, mail

DEVICES = 6
MESSAGES = 300


def _summary(gateway: DrillGateway, accounts: dict, recovery: float, **extra: Any) -> dict:
    return {
        "lost": sum(a.lost for a in accounts.values()),
        "duplicates": sum(a.duplicated for a in accounts.values()),
        "recovery_s": round(recovery, 3),
        "p99_push_latency_s": round(p99(gateway.latencies()), 3),
        **extra,
    }


def _all_received(gateway: DrillGateway, expected: set[tuple[str, str]]):
    return lambda: all(a.lost == 0 for a in tally(gateway.fcm.requests, expected).values())


def push_kill(gateway: DrillGateway) -> dict:
    tokens = gateway.devices(DEVICES)
    boxes = gateway.mailboxes(MESSAGES)
    for mailbox_id, _public_id in boxes:
        gateway.queue_mail(mailbox_id)
    expected = {(public_id, token) for _id, public_id in boxes for token in tokens}
    gateway.fcm.latency = 0.3
    doomed = gateway.start("push")
    gateway.fcm.wait_for_count(len(expected) // 3, timeout=120)
    gateway.kill(doomed)
    gateway.fcm.latency = 0.0
    gateway.wait_ready(gateway.start("push"))
    recovery = wait_for(_all_received(gateway, expected), timeout=120, what="every push")
    return _summary(gateway, tally(gateway.fcm.requests, expected), recovery)


def sync_kill(gateway: DrillGateway) -> dict:
    tokens = gateway.devices(DEVICES)
    boxes = [gateway.imap_mailbox() for _ in range(10)]
    gateway.start("push")
    doomed = gateway.start("sync")
    wait_for(gateway.in_idle, timeout=120, what="every mailbox in IDLE")
    gateway.kill(doomed)
    for index in range(MESSAGES):
        gateway.deliver(boxes[index % len(boxes)][0])
    gateway.wait_ready(gateway.start("sync"))
    started = time.monotonic()
    expected = {(public_id, token) for _address, public_id in boxes for token in tokens}
    _wait_for_final_counts(gateway, expected, str(MESSAGES // len(boxes)))
    recovery = time.monotonic() - started
    return _summary(gateway, tally(gateway.fcm.requests, expected), recovery)


def _wait_for_final_counts(
    gateway: DrillGateway, expected: set[tuple[str, str]], last: str
) -> None:
    """Every (mailbox, device) pushed, and its latest push saying `last` unread."""
    wait_for(_all_received(gateway, expected), timeout=180, what="every mailbox's push")
    wait_for(
        lambda: (
            {
                (r.data["mailbox"], r.token)
                for r in gateway.fcm.requests
                if r.status == 200 and r.data.get("unread") == last
            }
            >= expected
        ),
        timeout=180,
        what="the final counts",
    )


def _watched(gateway: DrillGateway, count: int) -> tuple[list[tuple[str, str]], set]:
    """`DEVICES` phones, `count` Dovecot mailboxes in IDLE under running sync and push."""
    tokens = gateway.devices(DEVICES)
    boxes = [gateway.imap_mailbox() for _ in range(count)]
    gateway.start("push")
    gateway.start("sync")
    wait_for(gateway.in_idle, timeout=120, what="every mailbox in IDLE")
    return boxes, {(public_id, token) for _address, public_id in boxes for token in tokens}


def dovecot_restart(gateway: DrillGateway) -> dict:
    boxes, expected = _watched(gateway, 10)
    started = time.monotonic()
    gateway.dovecot.restart()
    for index in range(MESSAGES):
        gateway.deliver(boxes[index % len(boxes)][0])
    _wait_for_final_counts(gateway, expected, str(MESSAGES // len(boxes)))
    recovery = time.monotonic() - started
    return _summary(gateway, tally(gateway.fcm.requests, expected), recovery)


def database_down(gateway: DrillGateway, cluster: ThrowawayPostgres, seconds: float) -> dict:
    boxes, expected = _watched(gateway, 10)
    cluster.stop()
    down = time.monotonic()
    for index in range(MESSAGES):
        gateway.deliver(boxes[index % len(boxes)][0])
    time.sleep(max(0.0, seconds - (time.monotonic() - down)))  # the outage's length
    cluster.start()
    down_for = time.monotonic() - down
    back, started = time.time(), time.monotonic()
    _wait_for_final_counts(gateway, expected, str(MESSAGES // len(boxes)))
    recovery = time.monotonic() - started
    return _summary(
        gateway,
        tally(gateway.fcm.requests, expected),
        recovery,
        downtime_s=round(down_for, 1),
        pushed_within_s=round(max(gateway.first_push_after(expected, back)), 3),
    )


def _messages_in(gateway: DrillGateway, public_id: str) -> int:
    with gateway.sessions() as db:
        return db.scalar(
            select(func.count(Message.id))
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Mailbox.public_id == public_id)
        )


def first_import_kill(gateway: DrillGateway) -> dict:
    tokens = gateway.devices(DEVICES)
    address, public_id = gateway.imap_mailbox()
    old = 3000
    deliver_many(gateway.dovecot, address, (mail(f"ancien {n}", to=address) for n in range(old)))
    gateway.start("push")
    doomed = gateway.start("sync")
    wait_for(lambda: _messages_in(gateway, public_id) > 0, timeout=120, what="a first batch")
    gateway.kill(doomed)
    imported = _messages_in(gateway, public_id)
    gateway.deliver(address, "nouveau")
    gateway.wait_ready(gateway.start("sync"))
    started = time.monotonic()
    expected = {(public_id, token) for token in tokens}
    wait_for(lambda: _messages_in(gateway, public_id) == old + 1, timeout=300, what="import")
    wait_for(_all_received(gateway, expected), timeout=120, what="the new mail's push")
    recovery = time.monotonic() - started
    with gateway.sessions() as db:
        announced = db.scalar(
            select(func.count(OutboxEvent.id)).where(OutboxEvent.kind == "mail.new")
        )
    return _summary(
        gateway,
        tally(gateway.fcm.requests, expected),
        recovery,
        imported_before_kill=imported,
        old_announced=announced - 1,
    )


def _slowest_open(gateway: DrillGateway, public_id: str) -> float:
    """The longest time to open one message of the mailbox as GET /messages/{id} does
    (from its server: the body cache starts empty), in seconds."""
    from backend.config import load_settings
    from backend.reading import messages as reading
    from backend.reading.cache import BodyCache

    settings = load_settings({k: v for k, v in gateway.env.items() if k.startswith("ESTAFETTE_")})
    cache = BodyCache(gateway.workdir / "body-cache")
    slowest = 0.0
    with gateway.sessions() as db:
        user = db.get(User, gateway.user)
        ids = db.scalars(
            select(Message.public_id)
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Mailbox.public_id == public_id)
        ).all()
        for message_id in ids:
            started = time.monotonic()
            located = reading.get_visible_message(db=db, user=user, public_id=message_id)
            reading.read_message(located, cache=cache, settings=settings)
            slowest = max(slowest, time.monotonic() - started)
    return slowest


def hostile(gateway: DrillGateway) -> dict:
    tokens = gateway.devices(DEVICES)
    address, public_id = gateway.imap_mailbox()
    gateway.start("push")
    sync = gateway.start("sync")
    wait_for(gateway.in_idle, timeout=120, what="the mailbox in IDLE")
    corpus = hostile_corpus(address)
    deliver_many(gateway.dovecot, address, corpus.values())
    corpus_sync = wait_for(
        lambda: _messages_in(gateway, public_id) == len(corpus),
        timeout=300,
        what="the corpus stored",
    )
    wait_for(lambda: gateway.pending() == 0, timeout=120, what="the corpus's pushes sent")
    slowest_open = _slowest_open(gateway, public_id)
    since = time.time()
    gateway.deliver(address, "après le corpus")
    expected = {(public_id, token) for token in tokens}
    wait_for(
        lambda: len(gateway.first_push_after(expected, since)) == len(expected),
        timeout=120,
        what="the ordinary mail's push",
    )
    peak_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{sync.pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return _summary(
        gateway,
        tally(gateway.fcm.requests, expected),
        max(gateway.first_push_after(expected, since)),
        corpus_messages=len(corpus),
        corpus_sync_s=round(corpus_sync, 3),
        slowest_open_s=round(slowest_open, 3),
        mailbox_ok=gateway.in_idle(),
        sync_peak_rss_mb=peak_kib // 1024,
    )


@contextlib.contextmanager
def _database_on(cluster: ThrowawayPostgres, name: str) -> Iterator[str]:
    url = cluster.create_database(name)
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    yield url


def storm(gateway: DrillGateway, kind: str, retry_after: float | None, seconds: float) -> dict:
    tokens = gateway.devices(DEVICES)
    boxes = gateway.mailboxes(MESSAGES)
    expected = {(public_id, token) for _id, public_id in boxes for token in tokens}
    gateway.wait_ready(gateway.start("push"))
    gateway.fcm.fail_all(kind, retry_after=retry_after)  # type: ignore[arg-type]
    for mailbox_id, _public_id in boxes:
        gateway.queue_mail(mailbox_id)
    time.sleep(seconds)  # the incident's length
    refused = sum(1 for r in gateway.fcm.requests if r.status != 200)
    gateway.fcm.fail_all(None)
    recovery = wait_for(_all_received(gateway, expected), timeout=180, what="every push")
    return _summary(
        gateway, tally(gateway.fcm.requests, expected), recovery, requests_refused=refused
    )


def outage(gateway: DrillGateway) -> dict:
    result = simulate_outage(gateway, devices=DEVICES, mailboxes=MESSAGES // DEVICES, minutes=10)
    return {
        **_summary(gateway, result["tally"], result["recovery_s"]),
        "requests_during_outage": result["requests_during_outage"],
    }


def burst(gateway: DrillGateway) -> dict:
    tokens = gateway.devices(DEVICES)
    [(mailbox_id, public_id)] = gateway.mailboxes(1)
    gateway.wait_ready(gateway.start("push"))
    gateway.queue_burst(mailbox_id, 5000)
    recovery = wait_for(lambda: gateway.pending() == 0, timeout=180, what="the outbox to drain")
    expected = {(public_id, token) for token in tokens}
    pushes = Counter(r.token for r in gateway.fcm.requests if r.status == 200)
    return _summary(
        gateway,
        tally(gateway.fcm.requests, expected),
        recovery,
        max_pushes_per_device=max(pushes.values(), default=0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm-seconds", type=float, default=40.0)
    parser.add_argument("--outage-seconds", type=float, default=45.0)
    parser.add_argument("--only", nargs="*", help="run only these drills")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="estafette-faults-") as tmp, FakeFcm() as fcm:
        work = Path(tmp)
        dovecot = DovecotServer(work / "dovecot", max_connections=200)
        dovecot.start()
        cluster = ThrowawayPostgres()
        cluster.start()
        try:
            drills = {
                "push_kill": push_kill,
                "sync_kill": sync_kill,
                "storm_503_retry_after": lambda g: storm(g, "unavailable", 1.0, args.storm_seconds),
                "storm_500": lambda g: storm(g, "internal", None, args.storm_seconds),
                "outage_10min_simulated": outage,
                "burst": burst,
                "dovecot_restart": dovecot_restart,
                "db_outage_45s": lambda g: database_down(g, cluster, args.outage_seconds),
                "db_restart": lambda g: database_down(g, cluster, 0.0),
                "first_import_kill": first_import_kill,
                "hostile": hostile,
            }
            for name, drill in drills.items():
                if args.only and name not in args.only:
                    continue
                fcm.reset()
                fcm.latency = 0.0
                database = (
                    _database_on(cluster, name) if name.startswith("db_") else scratch_database()
                )
                with (
                    database as url,
                    DrillGateway(url, fcm, work / name, dovecot=dovecot) as gateway,
                ):
                    results[name] = drill(gateway)
        finally:
            cluster.destroy()
            dovecot.stop()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
