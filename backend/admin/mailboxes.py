"""Administering mailboxes: settings changes, removal and delegation.

A change to the IMAP settings bumps `settings_version`: the sync worker holding the
mailbox sees it on its next heartbeat and restarts that mailbox's sync alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend import errors
from backend.admin import diffs
from backend.admin.audited_changes import AdminChange, mailbox_created
from backend.certificates import P12Unusable, load_p12
from backend.mailboxes import registry
from backend.storage.models import Mailbox, Membership, User

_SERVER_FIELDS = ("host", "port", "security", "auth", "username")
_XOAUTH2_FIELDS = ("token_url", "client_id")


@dataclass(frozen=True)
class Change:
    """What an admin call changed, ready for the audit record."""

    details: dict[str, Any]
    restarted_sync: bool = False


def check_certificate(p12: bytes, passphrase: str | None, field: str) -> None:
    """Refuse a .p12 that the stored passphrase cannot open: sync would fail on it later."""
    try:
        load_p12(p12, passphrase)
    except P12Unusable as exc:
        raise errors.ValidationFailed({field: [f"{exc}."]}) from None


def register_mailbox(
    *,
    db: Session,
    address: str,
    kind: str,
    display_name: str | None,
    imap: registry.ServerSettings,
    certificate: bytes | None = None,
    smtp: registry.ServerSettings | None = None,
    max_message_bytes: int | None = None,
) -> tuple[Mailbox, AdminChange]:
    """Register a mailbox with settings that can work, for the API and the CLI alike."""
    if certificate is not None:
        check_certificate(certificate, imap.secret, "imap.certificate")
    mailbox = registry.create_mailbox(
        db=db,
        address=address,
        kind=kind,
        display_name=display_name,
        imap=imap,
        certificate=certificate,
        smtp=smtp,
    )
    if max_message_bytes is not None:
        mailbox.max_message_bytes = max_message_bytes
    check_settings(mailbox)
    db.flush()
    return mailbox, mailbox_created(mailbox)


def get_mailbox(*, db: Session, public_id: str) -> Mailbox:
    mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == public_id))
    if mailbox is None:
        raise errors.NotFound("no such mailbox")
    return mailbox


def _apply_server(mailbox: Mailbox, prefix: str, values: dict[str, Any]) -> set[str]:
    """Copy one server's fields onto the model; return the secrets that were given."""
    replaced = set()
    names = (*_SERVER_FIELDS, *_XOAUTH2_FIELDS) if prefix == "imap" else _SERVER_FIELDS
    for name in names:
        if name in values:
            setattr(mailbox, f"{prefix}_{name}", values[name])
    if "secret" in values:
        setattr(mailbox, f"{prefix}_secret", values["secret"] or None)
        replaced.add(f"{prefix}.secret")
    return replaced


def check_settings(mailbox: Mailbox) -> None:
    """Field errors for settings that cannot work together (auth mode without its secret)."""
    problems: dict[str, list[str]] = {}
    if mailbox.kind not in registry.KINDS:
        problems["kind"] = [f"One of {', '.join(registry.KINDS)}."]
    for prefix in ("imap", "smtp"):
        security, auth = getattr(mailbox, f"{prefix}_security"), getattr(mailbox, f"{prefix}_auth")
        port = getattr(mailbox, f"{prefix}_port")
        if prefix == "smtp" and mailbox.smtp_host is None:
            continue
        if security not in registry.SECURITY:
            problems[f"{prefix}.security"] = [f"One of {', '.join(registry.SECURITY)}."]
        if auth not in registry.AUTH_MODES:
            problems[f"{prefix}.auth"] = [f"One of {', '.join(registry.AUTH_MODES)}."]
        if port is None or not 0 < port < 65536:
            problems[f"{prefix}.port"] = ["A TCP port."]
    if mailbox.imap_auth == "xoauth2" and not (mailbox.imap_token_url and mailbox.imap_client_id):
        problems["imap.token_url"] = ["xoauth2 needs token_url and client_id."]
    if mailbox.imap_auth == "certificate" and mailbox.imap_certificate is None:
        problems["imap.certificate"] = ["A .p12 certificate is required for this auth mode."]
    if problems:
        raise errors.ValidationFailed(problems)


def update_mailbox(*, db: Session, mailbox: Mailbox, patch: dict[str, Any]) -> Change:
    """Apply a partial change of settings; IMAP changes restart that mailbox's sync."""
    before = diffs.mailbox_settings(mailbox)
    replaced: set[str] = set()
    for name in ("display_name", "kind", "max_message_bytes"):
        if name in patch:
            setattr(mailbox, name, patch[name])
    if "imap" in patch:
        imap = dict(patch["imap"])
        replaced |= _apply_server(mailbox, "imap", imap)
        if imap.get("certificate") is not None:
            mailbox.imap_certificate = imap["certificate"]
            replaced.add("imap.certificate")
    if "smtp" in patch:
        if patch["smtp"] is None:
            for name in (*_SERVER_FIELDS, "secret"):
                setattr(mailbox, f"smtp_{name}", None)
        else:
            replaced |= _apply_server(mailbox, "smtp", patch["smtp"])
    check_settings(mailbox)
    if mailbox.imap_certificate is not None and {"imap.certificate", "imap.secret"} & replaced:
        check_certificate(mailbox.imap_certificate, mailbox.imap_secret, "imap.certificate")
    after = diffs.mailbox_settings(mailbox)
    details = diffs.diff(before, after, replaced_secrets=replaced)
    imap_changed = any(k.startswith(("before.imap.", "after.imap.")) for k in details) or bool(
        replaced & {"imap.secret", "imap.certificate"}
    )
    if imap_changed:
        mailbox.settings_version += 1
        mailbox.sync_state = "connecting"
        mailbox.sync_detail = None
    db.flush()
    return Change(details=details, restarted_sync=imap_changed)


def delete_mailbox(*, db: Session, mailbox: Mailbox) -> None:
    """Forget the mailbox, its members and its cache; the server-side mail is untouched."""
    # The database cascades to memberships, folders, cached messages and pending pushes.
    db.execute(delete(Mailbox).where(Mailbox.id == mailbox.id))
    db.expunge(mailbox)


def members(*, db: Session, mailbox: Mailbox) -> list[tuple[User, str]]:
    rows = db.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.mailbox_id == mailbox.id)
        .order_by(User.username)
    ).all()
    return [(user, role) for user, role in rows]


def set_member(*, db: Session, mailbox: Mailbox, user: User, role: str) -> str | None:
    """Make `user` owner or delegate; return their previous role (None if new)."""
    previous = db.scalar(
        select(Membership.role).where(
            Membership.mailbox_id == mailbox.id, Membership.user_id == user.id
        )
    )
    registry.grant(db=db, mailbox=mailbox, user=user, role=role)
    return previous


def remove_member(*, db: Session, mailbox: Mailbox, user: User) -> str:
    """Cut a member's access: every API call and push checks membership, so it is at once."""
    role = db.scalar(
        select(Membership.role).where(
            Membership.mailbox_id == mailbox.id, Membership.user_id == user.id
        )
    )
    if role is None:
        raise errors.NotFound("this user is not a member of this mailbox")
    db.execute(
        delete(Membership).where(Membership.mailbox_id == mailbox.id, Membership.user_id == user.id)
    )
    db.flush()
    return role
