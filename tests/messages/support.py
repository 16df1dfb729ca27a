"""What the message specifications share: a signed-in user, a real mailbox, delivered mail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Self

from imapclient import IMAPClient
from sqlalchemy import select

from backend.mail.endpoints import imap_endpoint_for
from backend.mail.imap import connect
from backend.storage.models import AuditRecord, Mailbox, Message
from backend.sync.catch_up import catch_up, enable_change_tracking
from backend.sync.folders import poll_folders
from tests.factories import create_dovecot_mailbox, create_user
from tests.support import Authenticator, bearer, body


@dataclass
class Inbox:
    """One user, one Dovecot mailbox they own, and their bearer headers."""

    http: Any
    services: Any
    dovecot: Any
    username: str
    address: str
    password: str
    mailbox_id: str
    headers: dict[str, str]

    @classmethod
    def create(cls, http: Any, services: Any, dovecot: Any, *, kind: str = "PER") -> Inbox:
        username = create_user(services)
        mailbox = create_dovecot_mailbox(services, dovecot, owner=username, kind=kind)
        return cls.signed_in(http, services, dovecot, username, *mailbox)

    @classmethod
    def signed_in(
        cls,
        http: Any,
        services: Any,
        dovecot: Any,
        username: str,
        address: str,
        password: str,
        mailbox_id: str,
    ) -> Self:
        """The user signed in (TOTP enrolled) with their mailbox, as the app would be."""
        tokens = Authenticator().sign_in(http, username)
        headers = bearer(tokens["access_token"])
        return cls(http, services, dovecot, username, address, password, mailbox_id, headers)

    def deliver(self, raw: bytes) -> str:
        """Deliver over LMTP, bring the cache level (as the sync worker would), return the id."""
        self.dovecot.deliver(self.address, raw)
        self.sync()
        with self.services.sessions() as db:
            return db.scalar(
                select(Message.public_id)
                .join(Mailbox, Mailbox.id == Message.mailbox_id)
                .where(Mailbox.public_id == self.mailbox_id)
                .order_by(Message.uid.desc())
                .limit(1)
            )

    def sync(self) -> None:
        with self.services.sessions() as db:
            mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == self.mailbox_id))
            endpoint, mailbox_pk = imap_endpoint_for(mailbox), mailbox.id
        client = connect(endpoint, ca_bundle=self.services.settings.ca_bundle)
        try:
            catch_up(client, self.services.sessions, mailbox_id=mailbox_pk)
        finally:
            client.logout()

    def sync_folders(self) -> None:
        """The folder poll, as the sync worker runs it: folders listed and caught up."""
        with self.services.sessions() as db:
            mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == self.mailbox_id))
            endpoint, mailbox_pk = imap_endpoint_for(mailbox), mailbox.id
        client = connect(endpoint, ca_bundle=self.services.settings.ca_bundle)
        try:
            condstore, qresync = enable_change_tracking(client)
            poll_folders(
                client, self.services.sessions, mailbox_id=mailbox_pk, condstore=condstore,
                qresync=qresync,
            )  # fmt: skip
        finally:
            client.logout()

    def desktop(self) -> IMAPClient:
        """The desktop mail client's view of the same mailbox."""
        client = IMAPClient(
            self.dovecot.host,
            port=self.dovecot.imaps_port,
            ssl_context=self.dovecot.client_ssl_context(),
        )
        client.login(self.address, self.password)
        return client

    def get(self, message_id: str) -> Any:
        return self.http.get(f"/api/v1/messages/{message_id}", headers=self.headers)

    def read(self, message_id: str) -> dict:
        response = self.get(message_id)
        assert response.status_code == 200, body(response)
        return body(response)

    def download(self, message_id: str, part: str) -> Any:
        return self.http.get(
            f"/api/v1/messages/{message_id}/attachments/{part}", headers=self.headers
        )


def audit_rows(services: Any, action: str | None = None) -> list[AuditRecord]:
    with services.sessions() as db:
        query = select(AuditRecord).order_by(AuditRecord.id)
        if action is not None:
            query = query.where(AuditRecord.action == action)
        return list(db.scalars(query))


def audit_text(services: Any) -> str:
    """Every audit record as one string, to search for content that must not be there."""
    return "\n".join(
        json.dumps(
            {c.name: str(getattr(row, c.name)) for c in AuditRecord.__table__.columns},
            ensure_ascii=False,
        )
        for row in audit_rows(services)
    )
