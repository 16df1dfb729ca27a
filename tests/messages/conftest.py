"""Fixtures for the message specifications: a signed-in doctor with a Dovecot mailbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.messages.support import Inbox


@pytest.fixture
def inbox(http, dovecot_services, dovecot) -> Iterator[Inbox]:
    """A signed-in doctor with a PER mailbox on Dovecot."""
    yield Inbox.create(http, dovecot_services, dovecot)
