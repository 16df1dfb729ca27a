"""Fixtures for sending: doctors who send through the test Dovecot's submission."""

from __future__ import annotations

import pytest

from tests.sending.support import Doctor


@pytest.fixture
def alice(http, dovecot_services, dovecot) -> Doctor:
    """A signed-in doctor whose mailbox sends through Dovecot's submission (STARTTLS, 587)."""
    return Doctor.create(http, dovecot_services, dovecot)


@pytest.fixture
def bob(http, dovecot_services, dovecot) -> Doctor:
    """A second doctor, on the same operator: what alice sends really lands in his INBOX."""
    return Doctor.create(http, dovecot_services, dovecot)


@pytest.fixture
def dsn_relay(dovecot):
    """The relay behind Dovecot's submission offers DSN (RFC 3461) for this test only.

    Dovecot 2.3's submission is a proxy: after AUTH it announces the relay's DSN and
    passes NOTIFY/ORCPT/RET/ENVID through (doc.dovecot.org, "Submission Server").
    """
    dovecot.relay_dsn = True
    yield dovecot
    dovecot.relay_dsn = False


@pytest.fixture
def refusing_relay(dovecot):
    """The relay answers 550 to RCPT for the addresses a test adds (lower case)."""
    yield dovecot.relay_refuses
    dovecot.relay_refuses.clear()
