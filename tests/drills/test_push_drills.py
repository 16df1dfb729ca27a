"""Push-side fault drills (issue 21): kill, starve and flood the operator's processes.

Real `flask --app mobile_api push` / `sync` processes on PostgreSQL, the local FCM, real
Dovecot for sync. Each drill counts, per device, the pushes expected, received, lost and
duplicated (`push_harness.tally`). `bench/faults.py` runs the same at larger counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.push.breaker import PROBE_SIZE
from backend.push.dispatcher import SEND_CHUNK
from devtools.drills.push_harness import (
    DrillGateway,
    FakeFcm,
    everything_received,
    simulate_outage,
    tally,
    wait_for,
)
from tests.conftest import running_dovecot

pytestmark = [
    pytest.mark.drill,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

RESTART_SECONDS = 5.0  # pushes flow again this soon after a replacement is up
STORM_SECONDS = 8.0  # the 40 s incident of the drill, shortened


@pytest.fixture
def gateway(database_url: str, fake_fcm: FakeFcm, tmp_path: Path) -> Iterator[DrillGateway]:
    with DrillGateway(database_url, fake_fcm, tmp_path) as gateway:
        yield gateway
    fake_fcm.latency = 0.0


@pytest.fixture
def imap_gateway(
    database_url: str, fake_fcm: FakeFcm, dovecot, tmp_path: Path
) -> Iterator[DrillGateway]:
    with DrillGateway(database_url, fake_fcm, tmp_path, dovecot=dovecot) as gateway:
        yield gateway


def test_push_killed_mid_batch_repeats_at_most_the_in_flight_and_flows_on_restart(
    gateway: DrillGateway,
) -> None:
    tokens = gateway.devices(6)
    boxes = gateway.mailboxes(100)
    for mailbox_id, _public_id in boxes:
        gateway.queue_mail(mailbox_id)
    expected = {(public_id, token) for _id, public_id in boxes for token in tokens}
    gateway.fcm.latency = 0.3  # a slow FCM: 600 pushes take a few seconds

    doomed = gateway.start("push")
    gateway.fcm.wait_for_count(250, timeout=60)
    gateway.kill(doomed)
    before_restart = len(gateway.fcm.requests)
    gateway.fcm.latency = 0.0
    gateway.wait_ready(gateway.start("push"))  # the lease is at its default: two minutes
    wait_for(
        lambda: len(gateway.fcm.requests) > before_restart,
        timeout=RESTART_SECONDS,
        what="the replacement's first push",
    )
    wait_for(everything_received(gateway, expected), timeout=30, what="every push")

    accounts = tally(gateway.fcm.requests, expected)
    assert sum(a.lost for a in accounts.values()) == 0
    duplicates = sum(a.duplicated for a in accounts.values())
    assert duplicates <= SEND_CHUNK  # at most the chunk on the wire at the kill
    for request in gateway.fcm.requests:  # a repeat replaces the first on the phone
        assert request.message["android"]["collapse_key"] == request.data["mailbox"]
        assert request.message["apns"]["headers"]["apns-collapse-id"] == request.data["mailbox"]


def test_sync_killed_while_idle_is_replaced_and_the_mail_pushed_on_restart(
    imap_gateway: DrillGateway,
) -> None:
    gateway = imap_gateway
    tokens = gateway.devices(2)
    address, public_id = gateway.imap_mailbox()
    gateway.start("push")
    doomed = gateway.start("sync")
    wait_for(gateway.in_idle, timeout=30, what="the mailbox in IDLE")

    gateway.kill(doomed)
    gateway.deliver(address)  # lands while nobody watches
    gateway.wait_ready(gateway.start("sync"))  # the lease is at its default: thirty seconds
    expected = {(public_id, token) for token in tokens}
    wait_for(
        everything_received(gateway, expected),
        timeout=RESTART_SECONDS,
        what="the mail pushed after the restart",
    )
    accounts = tally(gateway.fcm.requests, expected)
    assert {token: (a.lost, a.duplicated) for token, a in accounts.items()} == dict.fromkeys(
        tokens, (0, 0)
    )


@pytest.mark.parametrize(
    ("kind", "retry_after"), [("unavailable", 1.0), ("internal", None)], ids=["503+RA", "500"]
)
def test_an_fcm_storm_delays_pushes_and_loses_none(
    gateway: DrillGateway, kind: str, retry_after: float | None
) -> None:
    tokens = gateway.devices(4)
    boxes = gateway.mailboxes(25)
    expected = {(public_id, token) for _id, public_id in boxes for token in tokens}
    gateway.start("push")
    gateway.fcm.fail_all(kind, retry_after=retry_after)  # type: ignore[arg-type]
    for mailbox_id, _public_id in boxes:
        gateway.queue_mail(mailbox_id)
    gateway.fcm.wait_for(lambda seen: len(seen) >= 10, timeout=30)
    time.sleep(STORM_SECONDS)  # the incident's length: deliberate, not a wait for a result
    gateway.fcm.fail_all(None)
    # Within the breaker's longest pause (30 s) and a probe, on a loaded machine.
    wait_for(everything_received(gateway, expected), timeout=60, what="every push")
    wait_for(lambda: gateway.pending() == 0, timeout=15, what="the outbox to drain")

    accounts = tally(gateway.fcm.requests, expected)
    assert {token: a.lost for token, a in accounts.items()} == dict.fromkeys(tokens, 0)
    assert {status for _e, _d, status in gateway.world.deliveries()} == {"ok"}


def test_a_ten_minute_outage_simulated_at_the_sender_loses_nothing(
    gateway: DrillGateway,
) -> None:
    result = simulate_outage(gateway, devices=5, mailboxes=10, minutes=10)

    accounts = result["tally"]
    assert sum(a.lost for a in accounts.values()) == 0
    assert sum(a.duplicated for a in accounts.values()) == 0
    # The breaker paid for the outage, not each push: probes, at least ten seconds apart.
    assert result["requests_during_outage"] <= 50 + PROBE_SIZE * 60


def test_a_burst_of_5000_into_one_mailbox_is_a_few_pushes_per_device(
    gateway: DrillGateway,
) -> None:
    tokens = gateway.devices(3)
    [(mailbox_id, public_id)] = gateway.mailboxes(1)
    gateway.start("push")
    gateway.queue_burst(mailbox_id, 5000)
    wait_for(lambda: gateway.pending() == 0, timeout=60, what="the outbox to drain")

    pushes = Counter(r.token for r in gateway.fcm.requests)
    assert set(pushes) == set(tokens)
    assert max(pushes.values()) <= 12  # not 5,000
    for token in tokens:
        last = [r for r in gateway.fcm.requests if r.token == token][-1]
        assert (last.data["mailbox"], last.data["unread"]) == (public_id, "5000")


@pytest.fixture
def own_dovecot(tmp_path: Path):
    """A Dovecot of the drill's own: the session's is shared, and this one is restarted."""
    from devtools.dovecot import DovecotServer

    with running_dovecot(DovecotServer(tmp_path / "dovecot")) as server:
        yield server


def test_a_dovecot_restart_is_ridden_out_and_the_mail_after_it_pushed(
    database_url: str, fake_fcm: FakeFcm, own_dovecot, tmp_path: Path
) -> None:
    with DrillGateway(database_url, fake_fcm, tmp_path / "gateway", dovecot=own_dovecot) as gateway:
        tokens = gateway.devices(2)
        boxes = [gateway.imap_mailbox() for _ in range(3)]
        expected = {(public_id, token) for _address, public_id in boxes for token in tokens}
        gateway.start("push")
        gateway.start("sync")
        wait_for(gateway.in_idle, timeout=60, what="every mailbox in IDLE")

        own_dovecot.restart()  # every IDLE connection is cut; ports, users and mail stay
        back = time.time()
        for address, _public_id in boxes:
            gateway.deliver(address, "après le redémarrage")

        wait_for(everything_received(gateway, expected), timeout=60, what="every push")
        accounts = tally(gateway.fcm.requests, expected)
        assert {t: (a.lost, a.duplicated) for t, a in accounts.items()} == dict.fromkeys(
            tokens, (0, 0)
        )
        assert len(gateway.first_push_after(expected, back)) == len(expected)
        wait_for(gateway.in_idle, timeout=60, what="every mailbox back to ok, none in error")
