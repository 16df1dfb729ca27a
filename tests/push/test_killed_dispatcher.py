"""A dispatcher SIGKILLed mid-batch loses nothing, and resends only what was in doubt.

`flask --app mobile_api push` runs as a real process against the local FCM server, slowed
down so the kill lands in the middle of a batch; a second dispatcher picks the events up
once the first one's lease runs out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from backend.push.dispatcher import SEND_CHUNK, Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.database import session_scope
from backend.storage.models import Device, OutboxEvent, utcnow
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 1500
LEASE_SECONDS = 5


def _tokens_by_device(services) -> dict[int, str]:
    with services.sessions() as db:
        return {device.id: device.push_token for device in db.scalars(select(Device))}


def _pending(services) -> int:
    with services.sessions() as db:
        return len(db.scalars(select(OutboxEvent.id).where(OutboxEvent.done_at.is_(None))).all())


def test_a_dispatcher_killed_mid_batch_loses_nothing_and_duplicates_nothing_recorded(
    services,
    world: World,
    base_env: dict[str, str],
    fake_fcm: FakeFcm,
    fcm_credentials: Path,
    sender: FcmSender,
    tmp_path: Path,
) -> None:
    ward = world.user()
    world.devices(ward, DEVICES)
    mailboxes = {}
    for _ in range(2):
        mailbox_id, public_id = world.mailbox(ward)
        _message, event_id = world.new_mail(mailbox_id)
        mailboxes[event_id] = public_id
    token_of = _tokens_by_device(services)
    total = len(mailboxes) * DEVICES
    env = {
        **os.environ,
        **base_env,
        "ESTAFETTE_FCM_CREDENTIALS": str(fcm_credentials),
        "ESTAFETTE_FCM_ENDPOINT": fake_fcm.base_url,
        "ESTAFETTE_PUSH_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    fake_fcm.latency = 0.02  # ~1,000 pushes/s: the batch takes about three seconds
    log = (tmp_path / "push.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "mobile_api", "push"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        fake_fcm.wait_for_count(SEND_CHUNK * 2 + 200, timeout=60)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        fake_fcm.latency = 0.0

    before_kill = fake_fcm.requests
    recorded_at_kill = {(mailboxes[e], token_of[d]) for e, d, _status in world.deliveries()}
    sent_before_kill = {(r.data["mailbox"], r.token) for r in before_kill}
    in_doubt = sent_before_kill - recorded_at_kill
    # The kill landed mid-batch: some outcomes were committed, the batch was unfinished.
    assert 0 < len(recorded_at_kill) < total
    assert _pending(services) == len(mailboxes)

    recovery = Dispatcher(services.sessions, sender, lease_seconds=LEASE_SECONDS)
    wait_until(
        lambda: recovery.drain() >= 0 and _pending(services) == 0,
        timeout=LEASE_SECONDS + 30,
        what="the second dispatcher to finish the batch once the lease ran out",
    )

    received = Counter((r.data["mailbox"], r.token) for r in fake_fcm.requests)
    owed = {(public_id, token) for public_id in mailboxes.values() for token in token_of.values()}
    assert set(received) == owed  # nothing lost
    assert len(world.deliveries()) == total  # one record per (event, device)
    resent = {pair for pair, count in received.items() if count > 1}
    # Nothing recorded was sent again; only pushes in flight at the kill may be repeated,
    # once, and they carry the mailbox's collapse key so the phone replaces, not adds.
    assert resent <= in_doubt
    assert max(received.values()) <= 2
    # In doubt at most: the chunk on the wire. The one before it was recorded before it
    # left (see Dispatcher.drain).
    assert len(in_doubt) <= SEND_CHUNK
    for request in fake_fcm.requests:
        assert request.message["android"]["collapse_key"] == request.data["mailbox"]


def test_events_claimed_by_a_dispatcher_whose_session_ended_are_taken_at_once(
    services, world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    """What SIGKILL leaves: events leased for two minutes to a name with no session."""
    user = world.user()
    world.device(user, "phone")
    mailbox_id, _public_id = world.mailbox(user)
    world.new_mail(mailbox_id)
    with session_scope(services.sessions) as db:
        db.execute(
            update(OutboxEvent).values(
                claimed_by="push:gone:1:dead", available_at=utcnow() + timedelta(minutes=2)
            )
        )

    handled = dispatcher.drain()

    if services.engine.dialect.name == "postgresql":
        assert handled == 1  # liveness came from the session, not the clock
        assert [r.token for r in fake_fcm.requests] == ["phone"]
    else:
        assert handled == 0  # SQLite: the time lease decides
        assert fake_fcm.requests == []
