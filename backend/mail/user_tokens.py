"""Bearer tokens for `oauth_user` mailboxes: the owner's own access token from their
provider sign-in (Pro Santé Connect, or the establishment's IdP).

The token is kept sealed on the owner's `OidcIdentity`, and refreshed with the provider
shortly before it expires, under a row lock so that two processes never spend one
rotating refresh token twice. When the provider refuses the refresh, the owner must sign in
again: `ReauthRequired`, which the sync worker shows as `reauth_required` with a push. A
new sign-in stores fresh tokens and the next attempt catches up.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend import errors
from backend.accounts.openid import OpenIdProvider, RefreshRefused
from backend.config import OidcProviderSettings
from backend.mail.imap import ImapUnavailable, ReauthRequired
from backend.storage.database import session_scope
from backend.storage.models import Membership, OidcIdentity, utcnow

# Refresh this long before the announced expiry, so a token never dies mid-login.
EXPIRY_MARGIN = timedelta(seconds=60)


def owner_identity(db: Session, mailbox_id: int) -> int | None:
    """The identity of the mailbox's owner last signed in through a provider, if any."""
    return db.scalar(
        select(OidcIdentity.id)
        .join(Membership, Membership.user_id == OidcIdentity.user_id)
        .where(Membership.mailbox_id == mailbox_id, Membership.role == "owner")
        .order_by(OidcIdentity.last_sign_in_at.desc().nulls_last())
        .limit(1)
    )


class OwnerTokens:
    """A token provider (`ImapEndpoint.token_provider`): call it for a valid access token."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mailbox_id: int,
        providers: tuple[OidcProviderSettings, ...],
    ) -> None:
        self._sessions = sessions
        self._mailbox_id = mailbox_id
        self._providers = {p.name: p for p in providers}

    def __call__(self) -> str:
        """The owner's identity is looked up at each login: a first sign-in counts at once."""
        with session_scope(self._sessions) as db:
            identity_id = owner_identity(db, self._mailbox_id)
            link = (
                db.scalar(
                    select(OidcIdentity).where(OidcIdentity.id == identity_id).with_for_update()
                )
                if identity_id is not None
                else None
            )
            if link is None or not link.access_token:
                raise ReauthRequired("the owner must sign in with their provider again")
            expires = link.access_expires_at
            if expires is None or expires - EXPIRY_MARGIN > utcnow():
                return link.access_token
            return self._refresh(db, link)

    def _refresh(self, db: Session, link: OidcIdentity) -> str:
        settings = self._providers.get(link.provider)
        if settings is None or not link.refresh_token:
            raise ReauthRequired("the owner's token expired and cannot be refreshed")
        try:
            tokens = OpenIdProvider(settings, callback_url="").refresh(link.refresh_token)
        except RefreshRefused as exc:
            link.access_token = None  # spent: retries need no provider until a new sign-in
            link.refresh_token = None
            db.commit()
            raise ReauthRequired(f"the provider refused the refresh ({exc})") from exc
        except errors.OidcProviderFailed as exc:
            raise ImapUnavailable(f"token refresh failed: {exc.detail}") from exc
        link.access_token = tokens.access_token
        link.refresh_token = tokens.refresh_token
        link.access_expires_at = (
            utcnow() + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
        )
        return tokens.access_token

    def forget(self) -> None:
        """The server refused the token (revoked early?): refresh it next time."""
        with session_scope(self._sessions) as db:
            identity_id = owner_identity(db, self._mailbox_id)
            link = db.get(OidcIdentity, identity_id) if identity_id is not None else None
            if link is not None and link.access_token:
                link.access_expires_at = utcnow()
