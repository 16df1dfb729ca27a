"""`POST /devices/{id}/test-push`: one content-free push, now, and how it ended.

So that a nurse, or an app developer, can tell "notifications do not work" from "no mail
came": the push goes straight through the configured sender (FCM, or the browser's push
service), not the outbox, and its outcome is the answer. The device's push status is
updated as the dispatcher would; a token the provider calls gone is dropped.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.config import Settings
from backend.push import payloads
from backend.push.outbox_queries import device_push_state
from backend.push.outcomes import DEVICE_STATUS, Outcome
from backend.push.routing import create_senders
from backend.storage.models import Device, utcnow


def send_test_push(*, db: Session, settings: Settings, device: Device) -> tuple[str, Outcome]:
    """Send one `test` push to the device; (its push status now, the outcome)."""
    sender = create_senders(settings)
    try:
        [outcome] = sender.send([payloads.test(device.push_token or "")])
    finally:
        sender.close()
    status = DEVICE_STATUS[outcome.kind]
    for column, value in device_push_state(status, utcnow()).items():
        setattr(device, column, value)  # in the request's transaction, with its audit record
    return status, outcome
