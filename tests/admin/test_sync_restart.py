"""Changing a mailbox's settings restarts its sync, without restarting the worker."""

from __future__ import annotations

import uuid

import pytest

from tests.admin.conftest import sign_in
from tests.support import body, wait_until
from tests.sync.support import RunningWorker, sync_state


@pytest.fixture
def app(make_app, dovecot):
    """The gateway trusting the test Dovecot's CA, with short sync leases."""
    application = make_app(
        ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path), ESTAFETTE_SYNC_LEASE_SECONDS="6"
    )
    yield application
    application.extensions["estafette"].engine.dispose()


def test_a_corrected_password_restarts_that_mailbox_sync_in_the_running_worker(
    client, services, dovecot
) -> None:
    admin = sign_in(client, services, admin=True)
    address = f"dr.{uuid.uuid4().hex[:8]}@chu-test.mssante.fr"
    password = uuid.uuid4().hex
    dovecot.add_user(address, password)
    created = client.post(
        "/api/v1/admin/mailboxes",
        headers=admin.headers,
        json={
            "address": address,
            "kind": "PER",
            "imap": {
                "host": dovecot.host,
                "port": dovecot.imaps_port,
                "security": "tls",
                "auth": "password",
                "secret": "not the password",
            },
        },
    )
    mailbox_id = body(created)["id"]
    with RunningWorker(services):
        wait_until(
            lambda: sync_state(services, mailbox_id)[0] == "error",
            timeout=30,
            what="the wrong password to be reported",
        )
        patched = client.patch(
            f"/api/v1/admin/mailboxes/{mailbox_id}",
            headers=admin.headers,
            json={"imap": {"secret": password}},
        )
        assert patched.status_code == 200
        wait_until(
            lambda: sync_state(services, mailbox_id)[0] == "ok",
            timeout=30,
            what="the same worker to resync with the new password",
        )
