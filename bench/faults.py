"""Fault drills at size (issue 21, push side): what a kill, an FCM storm or a burst costs.

The drills of `tests/drills/test_push_drills.py`, at larger counts, each on a fresh
PostgreSQL database with the local FCM (and a real Dovecot for sync):

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

`lost` and `duplicates` sum the per-device tallies; `p99_push_latency_s` runs from the
outbox row to FCM's acceptance of a mailbox's first push to each device. One JSON line.

    .venv/bin/python -m bench.faults
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from backend.demo.dovecot import DovecotServer
from tests.drills.push_harness import (
    DrillGateway,
    FakeFcm,
    drill_database,
    p99,
    simulate_outage,
    tally,
    wait_for,
)

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
    wait_for(_all_received(gateway, expected), timeout=120, what="every mailbox's push")
    # Wait for the last count too: every mailbox's latest push says 30 unread.
    last = str(MESSAGES // len(boxes))
    wait_for(
        lambda: (
            {
                (r.data["mailbox"], r.token)
                for r in gateway.fcm.requests
                if r.status == 200 and r.data.get("unread") == last
            }
            >= expected
        ),
        timeout=120,
        what="the final counts",
    )
    recovery = time.monotonic() - started
    return _summary(gateway, tally(gateway.fcm.requests, expected), recovery)


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
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="estafette-faults-") as tmp, FakeFcm() as fcm:
        work = Path(tmp)
        dovecot = DovecotServer(work / "dovecot", max_connections=200)
        dovecot.start()
        try:
            drills = {
                "push_kill": push_kill,
                "sync_kill": sync_kill,
                "storm_503_retry_after": lambda g: storm(g, "unavailable", 1.0, args.storm_seconds),
                "storm_500": lambda g: storm(g, "internal", None, args.storm_seconds),
                "outage_10min_simulated": outage,
                "burst": burst,
            }
            for name, drill in drills.items():
                fcm.reset()
                fcm.latency = 0.0
                with (
                    drill_database() as url,
                    DrillGateway(url, fcm, work / name, dovecot=dovecot) as gateway,
                ):
                    results[name] = drill(gateway)
        finally:
            dovecot.stop()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
