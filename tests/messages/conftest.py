"""Fixtures for the message specifications: an app that trusts the test Dovecot's CA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.messages.support import Inbox


@pytest.fixture
def reader_app(dovecot_app):
    return dovecot_app


@pytest.fixture
def reader_services(reader_app):
    return reader_app.extensions["estafette"]


@pytest.fixture
def http(reader_app):
    return reader_app.test_client()


@pytest.fixture
def inbox(http, reader_services, dovecot) -> Iterator[Inbox]:
    """A signed-in doctor with a PER mailbox on Dovecot."""
    yield Inbox.create(http, reader_services, dovecot)
