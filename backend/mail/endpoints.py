"""How to reach a registered mailbox's IMAP and SMTP servers, from its stored settings.

Secrets are decrypted into the endpoint in memory only; nothing here opens a connection
(that is `backend.mail.imap.connect` and `backend.mail.smtp.connect`).
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.orm import object_session, sessionmaker

from backend.config import Settings
from backend.mail.imap import TOKEN_MODES, ImapEndpoint
from backend.mail.oauth import ClientCredentialsTokens
from backend.mail.smtp import SUBMISSION_TLS_PORT, SmtpEndpoint
from backend.mail.user_tokens import OwnerTokens
from backend.storage.models import Mailbox


def imap_endpoint_for(mailbox: Mailbox, settings: Settings | None = None) -> ImapEndpoint:
    """How to open this mailbox, whatever its auth mode (secrets decrypted, in memory only).

    `oauth_user` (the owner's own token from their provider sign-in) needs `settings`, for
    the providers a token is refreshed with."""
    token_provider = None
    if mailbox.imap_auth == "xoauth2" and mailbox.imap_token_url and mailbox.imap_client_id:
        token_provider = ClientCredentialsTokens(
            mailbox.imap_token_url, mailbox.imap_client_id, mailbox.imap_secret or ""
        )
    db = object_session(mailbox)
    if mailbox.imap_auth == "oauth_user" and settings is not None and db is not None:
        token_provider = OwnerTokens(
            sessionmaker(bind=db.get_bind(), expire_on_commit=False),
            mailbox.id,
            settings.oidc_providers,
        )
    return ImapEndpoint(
        address=mailbox.address,
        host=mailbox.imap_host,
        port=mailbox.imap_port,
        security=mailbox.imap_security,
        auth=mailbox.imap_auth,
        username=mailbox.imap_username or mailbox.address,
        secret=mailbox.imap_secret,
        certificate=mailbox.imap_certificate,
        token_provider=token_provider,
    )


def smtp_endpoint_for(mailbox: Mailbox, settings: Settings | None = None) -> SmtpEndpoint:
    """The mailbox's SMTP settings; unset, the IMAP server's host and credentials on 465.

    Why the fallback: MSSanté operators serve IMAP and SMTP from one host with one account,
    so most mailboxes are registered with IMAP settings only.
    """
    imap = imap_endpoint_for(mailbox, settings)
    if not mailbox.smtp_host:
        return dataclasses.replace(imap, port=SUBMISSION_TLS_PORT, security="tls")
    auth = mailbox.smtp_auth or imap.auth
    return SmtpEndpoint(
        address=mailbox.address,
        host=mailbox.smtp_host,
        port=mailbox.smtp_port or SUBMISSION_TLS_PORT,
        security=mailbox.smtp_security or "tls",
        auth=auth,
        username=mailbox.smtp_username or imap.username,
        secret=mailbox.smtp_secret if mailbox.smtp_secret is not None else imap.secret,
        certificate=imap.certificate,
        token_provider=imap.token_provider if auth in TOKEN_MODES else None,
    )
