"""Before/after of an admin change, flattened for the audit trail, with secrets masked.

Audit details are short scalars (ids and codes), so settings are flattened to
`before.imap.host`/`after.imap.host` pairs, and a secret only ever shows as `set`,
`unset` or `replaced`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from backend.storage.models import Mailbox

SECRET_FIELDS = ("imap.secret", "imap.certificate", "smtp.secret")
_MAX_VALUE = 100


def mailbox_settings(mailbox: Mailbox) -> dict[str, Any]:
    """The mailbox's settings as a flat mapping, secrets reduced to `set`/`unset`."""
    snapshot: dict[str, Any] = {
        "kind": mailbox.kind,
        "display_name": mailbox.display_name,
        "imap.host": mailbox.imap_host,
        "imap.port": mailbox.imap_port,
        "imap.security": mailbox.imap_security,
        "imap.auth": mailbox.imap_auth,
        "imap.username": mailbox.imap_username,
        "imap.token_url": mailbox.imap_token_url,
        "imap.client_id": mailbox.imap_client_id,
        "smtp.host": mailbox.smtp_host,
        "smtp.port": mailbox.smtp_port,
        "smtp.security": mailbox.smtp_security,
        "smtp.auth": mailbox.smtp_auth,
        "smtp.username": mailbox.smtp_username,
        "max_message_bytes": mailbox.max_message_bytes,
    }
    secrets = {
        "imap.secret": mailbox.imap_secret,
        "imap.certificate": mailbox.imap_certificate,
        "smtp.secret": mailbox.smtp_secret,
    }
    for name, value in secrets.items():
        snapshot[name] = "set" if value else "unset"
    return snapshot


def _short(value: Any) -> Any:
    """Audit details refuse long strings; a very long setting shows as its digest."""
    if isinstance(value, str) and len(value) > _MAX_VALUE:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:32]
    return value


def diff(
    before: dict[str, Any], after: dict[str, Any], *, replaced_secrets: set[str] = frozenset()
) -> dict[str, Any]:
    """Audit details for a change: how many fields changed, each one's before and after."""
    details: dict[str, Any] = {}
    changed = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if name in replaced_secrets and old == "set" and new == "set":
            new = "replaced"
        if old == new:
            continue
        changed.append(name)
        details[f"before.{name}"] = _short(old)
        details[f"after.{name}"] = _short(new)
    details["changed"] = len(changed)
    return details


def created(after: dict[str, Any]) -> dict[str, Any]:
    """Audit details for a creation: every non-empty setting as `after.*`."""
    return {f"after.{k}": _short(v) for k, v in sorted(after.items()) if v is not None}
