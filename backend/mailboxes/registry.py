"""Mailboxes of the four MSSanté kinds and their members. Service functions take `db=`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import errors
from backend.storage.models import Folder, Mailbox, Membership, User

KINDS = ("PER", "ORG", "APP", "CAB")
SECURITY = ("tls", "starttls")
AUTH_MODES = ("password", "master", "xoauth2", "certificate", "oauth_user")
ROLES = ("owner", "delegate")


@dataclass(frozen=True)
class ServerSettings:
    """How to reach one IMAP or SMTP server of the operator."""

    host: str
    port: int
    security: str
    auth: str
    username: str | None = None
    secret: str | None = None
    # xoauth2 only: the OAuth2 client-credentials token endpoint and client id
    # (`secret` is then the client secret).
    token_url: str | None = None
    client_id: str | None = None


def _check_server(prefix: str, server: ServerSettings) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if server.security not in SECURITY:
        problems[f"{prefix}.security"] = [f"One of {', '.join(SECURITY)}."]
    if server.auth not in AUTH_MODES:
        problems[f"{prefix}.auth"] = [f"One of {', '.join(AUTH_MODES)}."]
    if not 0 < server.port < 65536:
        problems[f"{prefix}.port"] = ["A TCP port."]
    return problems


def create_mailbox(
    *,
    db: Session,
    address: str,
    kind: str,
    imap: ServerSettings,
    display_name: str | None = None,
    certificate: bytes | None = None,
    smtp: ServerSettings | None = None,
) -> Mailbox:
    """Register a mailbox; secrets and the .p12 are encrypted at rest by the model."""
    address = address.strip().lower()
    problems = _check_server("imap", imap)
    if smtp is not None:
        problems |= _check_server("smtp", smtp)
    if kind not in KINDS:
        problems["kind"] = [f"One of {', '.join(KINDS)}."]
    if "@" not in address:
        problems["address"] = ["A mail address."]
    if imap.auth == "certificate" and certificate is None:
        problems["imap.certificate"] = ["A .p12 certificate is required for this auth mode."]
    if problems:
        raise errors.ValidationFailed(problems)
    if db.scalar(select(Mailbox.id).where(Mailbox.address == address)) is not None:
        raise errors.Conflict(f"mailbox {address} already exists")
    mailbox = Mailbox(
        address=address,
        kind=kind,
        display_name=display_name,
        imap_host=imap.host,
        imap_port=imap.port,
        imap_security=imap.security,
        imap_auth=imap.auth,
        imap_username=imap.username or address,
        imap_secret=imap.secret,
        imap_certificate=certificate,
        imap_token_url=imap.token_url,
        imap_client_id=imap.client_id,
    )
    if smtp is not None:
        mailbox.smtp_host, mailbox.smtp_port = smtp.host, smtp.port
        mailbox.smtp_security, mailbox.smtp_auth = smtp.security, smtp.auth
        mailbox.smtp_username, mailbox.smtp_secret = smtp.username or address, smtp.secret
    db.add(mailbox)
    db.flush()
    return mailbox


def find_mailbox(*, db: Session, address: str) -> Mailbox | None:
    return db.scalar(select(Mailbox).where(Mailbox.address == address.strip().lower()))


def grant(*, db: Session, mailbox: Mailbox, user: User, role: str) -> Membership:
    """Make `user` an owner or delegate of `mailbox` (idempotent: updates the role)."""
    if role not in ROLES:
        raise errors.ValidationFailed({"role": [f"One of {', '.join(ROLES)}."]})
    membership = db.scalar(
        select(Membership).where(Membership.mailbox_id == mailbox.id, Membership.user_id == user.id)
    )
    if membership is None:
        membership = Membership(mailbox_id=mailbox.id, user_id=user.id, role=role)
        db.add(membership)
    else:
        membership.role = role
    db.flush()
    return membership


def visible_mailboxes(*, db: Session, user: User) -> list[tuple[Mailbox, str]]:
    """The mailboxes `user` may open, with their role in each."""
    rows = db.execute(
        select(Mailbox, Membership.role)
        .join(Membership, Membership.mailbox_id == Mailbox.id)
        .where(Membership.user_id == user.id)
        .order_by(Mailbox.address)
    ).all()
    return [(mailbox, role) for mailbox, role in rows]


def get_visible_mailbox(*, db: Session, user: User, public_id: str) -> tuple[Mailbox, str]:
    """A mailbox the user is a member of; any other id is `not_found` (no probing)."""
    row = db.execute(
        select(Mailbox, Membership.role)
        .join(Membership, Membership.mailbox_id == Mailbox.id)
        .where(Membership.user_id == user.id, Mailbox.public_id == public_id)
    ).first()
    if row is None:
        raise errors.NotFound("no such mailbox")
    return row[0], row[1]


def find_folder(*, db: Session, mailbox: Mailbox, name: str) -> Folder | None:
    """A folder of the mailbox as the cache knows it."""
    return db.scalar(select(Folder).where(Folder.mailbox_id == mailbox.id, Folder.name == name))


def get_folder(*, db: Session, mailbox: Mailbox, name: str) -> Folder:
    """A folder of the mailbox as the cache knows it; any other name is `not_found`."""
    folder = find_folder(db=db, mailbox=mailbox, name=name)
    if folder is None:
        raise errors.NotFound("no such folder")
    return folder
