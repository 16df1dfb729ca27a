"""Push fixtures: a small world of users, mailboxes, devices and mail, and a real FcmSender.

Rows are written straight through the models (no IMAP): these specifications are about
what the dispatcher does with the outbox, not about how sync fills it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm
from devtools.webpush_server import WebPushService


@pytest.fixture(scope="module")
def push_service() -> Iterator[WebPushService]:
    """A browser's push service on loopback: checks VAPID, decrypts as the browser would."""
    with WebPushService() as service:
        yield service


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


@pytest.fixture
def sender(fake_fcm: FakeFcm, fcm_credentials: Path) -> Iterator[FcmSender]:
    with FcmSender(fcm_credentials, fake_fcm.base_url) as fcm:
        yield fcm


@pytest.fixture
def dispatcher(services: Any, sender: FcmSender) -> Dispatcher:
    return Dispatcher(services.sessions, sender)
