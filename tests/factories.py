"""Factories for the objects specifications need, built through the service functions."""

from __future__ import annotations

import uuid
from typing import Any

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from tests.support import DEFAULT_PASSWORD


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def create_user(
    services: Any,
    username: str | None = None,
    *,
    admin: bool = False,
    password: str = DEFAULT_PASSWORD,
) -> str:
    username = username or unique("user")
    with session_scope(services.sessions) as db:
        users.create_user(db=db, username=username, password=password, is_admin=admin)
    return username


def create_dovecot_mailbox(
    services: Any,
    dovecot: Any,
    *,
    owner: str | None = None,
    kind: str = "PER",
    security: str = "tls",
    address: str | None = None,
    already_there: tuple[bytes, ...] | list[bytes] = (),
) -> tuple[str, str, str]:
    """A Dovecot user and the matching Estafette mailbox; returns (address, password, id).

    `already_there` is delivered before Estafette knows the mailbox: mail that predates it.
    """
    address = address or f"{unique('dr.')}@chu-test.mssante.fr"
    password = uuid.uuid4().hex
    dovecot.add_user(address, password)
    for raw in already_there:
        dovecot.deliver(address, raw)
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    with session_scope(services.sessions) as db:
        mailbox = registry.create_mailbox(
            db=db,
            address=address,
            kind=kind,
            imap=registry.ServerSettings(
                dovecot.host, port, security, "password", address, password
            ),
        )
        if owner is not None:
            user = users.find_user(db=db, username=owner)
            registry.grant(db=db, mailbox=mailbox, user=user, role="owner")
        public_id = mailbox.public_id
    return address, password, public_id
