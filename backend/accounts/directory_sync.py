"""Users and mailbox grants from the establishment IdP's directory (SCIM 2.0, RFC 7644).

What a Keycloak, Entra ID or LemonLDAP::NG administrator already maintains: who works
here (`/Users`, `active`), and in which groups (`/Groups`). `users sync-idp` (a systemd
timer) and `POST /api/v1/admin/directory-sync` make Estafette follow it:

- an active directory user with no account gets one (no usable password: they sign in
  with the IdP), linked to the IdP by their `userName`, which is the IdP's user claim;
- a user the directory no longer lists, or lists as inactive, is disabled here, and every
  one of their sessions ends at once (the same path as an administrator's disable);
- members of a group named in the provider's `mailbox_groups` get that mailbox, with that
  role; IdP-managed users who left the group lose it.

Only accounts linked to this IdP are ever disabled or ungranted: local accounts (the
break-glass administrator) are left alone. A directory that cannot be read changes
nothing: a partial listing must never look like everyone left.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import errors
from backend.accounts import users
from backend.admin import accounts as admin_accounts
from backend.admin import mailboxes as admin_mailboxes
from backend.admin.audited_changes import (
    audit_change,
    member_granted,
    member_revoked,
    user_created,
    user_updated,
)
from backend.audit.trail import Actor, AuditTrail
from backend.config import OidcProviderSettings
from backend.mailboxes import registry
from backend.storage.models import Membership, OidcIdentity, User

TIMEOUT_SECONDS = 15.0
PAGE_SIZE = 100
MAX_PAGES = 1000


@dataclass
class SyncReport:
    provider: str
    created: int = 0
    disabled: int = 0
    enabled: int = 0
    granted: int = 0
    revoked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _list(settings: OidcProviderSettings, kind: str) -> list[dict[str, Any]]:
    """Every resource of `kind` (Users, Groups), page after page (RFC 7644 §3.4.2.4)."""
    found: list[dict[str, Any]] = []
    start = 1
    headers = {"Authorization": f"Bearer {settings.scim_token}", "Accept": "application/scim+json"}
    with httpx.Client(timeout=TIMEOUT_SECONDS, verify=settings.tls_verify) as client:
        for _page in range(MAX_PAGES):
            try:
                response = client.get(
                    f"{settings.scim_url}/{kind}",
                    params={"startIndex": start, "count": PAGE_SIZE},
                    headers=headers,
                )
                response.raise_for_status()
                page = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise errors.DirectoryUnavailable(
                    f"{settings.name}: {kind} could not be read ({type(exc).__name__})"
                ) from exc
            resources = page.get("Resources") or []
            found.extend(resources)
            total = int(page.get("totalResults", len(found)))
            if not resources or len(found) >= total:
                return found
            start += len(resources)
    raise errors.DirectoryUnavailable(f"{settings.name}: {kind} has more pages than we follow")


def _display_name(user: dict[str, Any]) -> str | None:
    name = user.get("name") or {}
    joined = " ".join(p for p in (name.get("givenName"), name.get("familyName")) if p)
    return user.get("displayName") or joined or None


def sync_directory(
    *, db: Session, trail: AuditTrail, settings: OidcProviderSettings, actor: Actor
) -> SyncReport:
    """Make the accounts and grants follow the directory; each change audited with `actor`."""
    directory_users = _list(settings, "Users")
    groups = _list(settings, "Groups") if settings.mailbox_groups else []
    report = SyncReport(settings.name)
    active = {
        u["userName"].strip().lower(): u
        for u in directory_users
        if isinstance(u.get("userName"), str) and u.get("active", True) is not False
    }
    managed = {
        link.subject: link
        for link in db.scalars(select(OidcIdentity).where(OidcIdentity.provider == settings.name))
    }
    for name, entry in active.items():
        user = users.find_user(db=db, username=name)
        if user is None:
            user = users.create_user(
                db=db,
                username=name,
                password=secrets.token_urlsafe(32),  # nobody knows it: the IdP signs them in
                display_name=_display_name(entry),
            )
            audit_change(db, trail, user_created(user), actor=actor)
            report.created += 1
        elif user.disabled and name in managed:
            details = admin_accounts.update_user(db=db, user=user, patch={"disabled": False})
            audit_change(db, trail, user_updated(user, details), actor=actor)
            report.enabled += 1
        if name not in managed:
            managed[name] = OidcIdentity(user_id=user.id, provider=settings.name, subject=name)
            db.add(managed[name])
    db.flush()
    for name, link in managed.items():
        if name in active:
            continue
        user = db.get(User, link.user_id)
        if user is not None and not user.disabled:
            details = admin_accounts.update_user(db=db, user=user, patch={"disabled": True})
            audit_change(db, trail, user_updated(user, details), actor=actor)
            report.disabled += 1
    _sync_grants(db, trail, settings, actor, groups, directory_users, managed, report)
    db.flush()
    return report


def _sync_grants(
    db: Session,
    trail: AuditTrail,
    settings: OidcProviderSettings,
    actor: Actor,
    groups: list[dict[str, Any]],
    directory_users: list[dict[str, Any]],
    managed: dict[str, OidcIdentity],
    report: SyncReport,
) -> None:
    names_by_id = {
        u.get("id"): u["userName"].strip().lower()
        for u in directory_users
        if isinstance(u.get("userName"), str)
    }
    members_by_group = {
        g.get("displayName"): {names_by_id.get(m.get("value")) for m in g.get("members") or []}
        for g in groups
    }
    managed_ids = {link.user_id for link in managed.values()}
    for group, address, role in settings.mailbox_groups:
        mailbox = registry.find_mailbox(db=db, address=address)
        if mailbox is None:
            continue  # named before it is registered: granted at the next run after
        wanted = {
            managed[name].user_id for name in members_by_group.get(group, set()) if name in managed
        }
        for user_id in wanted:
            user = db.get(User, user_id)
            if user is None or user.disabled:
                continue
            previous = admin_mailboxes.set_member(db=db, mailbox=mailbox, user=user, role=role)
            if previous != role:
                audit_change(db, trail, member_granted(mailbox, user, previous, role), actor=actor)
                report.granted += 1
        current = db.scalars(
            select(Membership.user_id).where(
                Membership.mailbox_id == mailbox.id, Membership.role == role
            )
        ).all()
        for user_id in set(current) & managed_ids - wanted:
            user = db.get(User, user_id)
            removed = admin_mailboxes.remove_member(db=db, mailbox=mailbox, user=user)
            audit_change(db, trail, member_revoked(mailbox, user, removed), actor=actor)
            report.revoked += 1


def directory_providers(providers: tuple[OidcProviderSettings, ...]) -> list[OidcProviderSettings]:
    """The providers whose directory is followed (a SCIM URL is configured)."""
    return [p for p in providers if p.scim_url]
