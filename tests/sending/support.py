"""What the sending specifications share: doctors with real mailboxes, and the IMAP view."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import Mailbox, Message
from tests.factories import create_user, unique
from tests.messages.support import Inbox
from tests.support import body


def register_mailbox(
    services: Any,
    dovecot: Any,
    *,
    owner: str | None,
    address: str | None = None,
    smtp_security: str = "starttls",
    smtp_port: int | None = None,
    smtp_auth: str = "password",
    kind: str = "PER",
    p12: tuple[bytes, str] | None = None,
) -> tuple[str, str, str]:
    """A Dovecot user and its Estafette mailbox with SMTP submission; (address, password, id)."""
    address = address or f"{unique('dr.')}@chu-test.mssante.fr"
    password = uuid.uuid4().hex
    dovecot.add_user(address, password)
    port = smtp_port or (
        dovecot.submission_port if smtp_security == "starttls" else dovecot.submissions_port
    )
    smtp_user, smtp_secret = address, password
    if smtp_auth == "master":
        smtp_user, smtp_secret = dovecot.master_user, dovecot.master_password
    imap_auth, imap_secret, certificate = "password", password, None
    if p12 is not None:  # an APP mailbox: the .p12 opens both IMAP and SMTP (SASL EXTERNAL)
        certificate, passphrase = p12
        imap_auth = smtp_auth = "certificate"
        imap_secret = smtp_secret = passphrase
    with session_scope(services.sessions) as db:
        mailbox = registry.create_mailbox(
            db=db,
            address=address,
            kind=kind,
            display_name="Dr Test",
            imap=registry.ServerSettings(
                dovecot.host, dovecot.imaps_port, "tls", imap_auth, address, imap_secret
            ),
            certificate=certificate,
            smtp=registry.ServerSettings(
                dovecot.host, port, smtp_security, smtp_auth, smtp_user, smtp_secret
            ),
        )
        if owner is not None:
            user = users.find_user(db=db, username=owner)
            registry.grant(db=db, mailbox=mailbox, user=user, role="owner")
        public_id = mailbox.public_id
    return address, password, public_id


class Doctor(Inbox):
    """One user, one mailbox they own (IMAP + SMTP on the test Dovecot), their bearer."""

    @classmethod
    def create(cls, http: Any, services: Any, dovecot: Any, **mailbox: Any) -> Doctor:
        username = create_user(services)
        registered = register_mailbox(services, dovecot, owner=username, **mailbox)
        return cls.signed_in(http, services, dovecot, username, *registered)

    # -- the API --------------------------------------------------------------------

    def send(self, **payload: Any) -> Any:
        payload.setdefault("subject", "Compte rendu")
        payload.setdefault("text", "Bonjour,\nvoici le compte rendu.\n")
        return self.http.post(
            f"/api/v1/mailboxes/{self.mailbox_id}/messages", json=payload, headers=self.headers
        )

    def sent(self, **payload: Any) -> dict:
        response = self.send(**payload)
        assert response.status_code == 202, body(response)
        return body(response)

    def listing(self, folder: str = "INBOX") -> list[dict]:
        response = self.http.get(
            f"/api/v1/mailboxes/{self.mailbox_id}/messages",
            query_string={"folder": folder},
            headers=self.headers,
        )
        assert response.status_code == 200, body(response)
        return body(response)["items"]

    def read_receipt(self, message_id: str) -> Any:
        return self.http.post(f"/api/v1/messages/{message_id}/read-receipt", headers=self.headers)

    # -- what the sync worker and the desktop client see ----------------------------

    def inbox_id(self, message_id_header: str) -> str:
        """The cached id of the INBOX message carrying this Message-ID."""
        self.sync()
        with self.services.sessions() as db:
            rows = db.scalars(
                select(Message)
                .join(Mailbox, Mailbox.id == Message.mailbox_id)
                .where(Mailbox.public_id == self.mailbox_id)
            ).all()
            for row in rows:
                if row.message_id_header == message_id_header:
                    return row.public_id
        raise AssertionError(f"{message_id_header} is not in {self.address}'s cache")

    def folder_messages(self, folder: str) -> list[tuple[EmailMessage, set[bytes]]]:
        """Every message of a folder as the desktop client reads it, with its flags."""
        with self.desktop() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
        return [
            (
                message_from_bytes(data[b"BODY[]"], policy=policy.default),
                set(data[b"FLAGS"]),
            )
            for _uid, data in sorted(fetched.items())
        ]

    def find(self, folder: str, message_id: str) -> tuple[EmailMessage, set[bytes]] | None:
        for message, flags in self.folder_messages(folder):
            if message["Message-ID"] == message_id:
                return message, flags
        return None


def relayed_with(dovecot: Any, message_id: str) -> list[Any]:
    """What Dovecot's submission relayed onwards carrying this Message-ID."""
    return [r for r in dovecot.relayed if f"Message-ID: {message_id}".encode() in r.data]
