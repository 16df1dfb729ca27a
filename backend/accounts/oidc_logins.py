"""Sign-ins through an OpenID provider: from /start to the app's one-time code, and users.

RFC 8252: the app opens the system browser on /start with its own PKCE challenge; the
gateway does the code exchange with the provider (with its own PKCE verifier, state and
nonce) and sends the app back a one-time code that lives a minute and that only the app's
verifier redeems. The provider's tokens never reach the app. As for TOTP codes, every
claim of a state or a code is one conditional UPDATE judged by the rows it changed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from backend import errors
from backend.accounts import devices as device_service
from backend.accounts import users
from backend.accounts.openid import OpenIdProvider, ProviderIdentity
from backend.storage.models import Device, OidcIdentity, OidcLogin, User, utcnow

LOGIN_MINUTES = 10
CODE_SECONDS = 60
PROVIDER_METHODS = {"psc": ("psc_ecps", "psc_card"), "idp": ("idp",)}


def _digest(value: str) -> str:
    """Codes and states are 256 random bits: a plain SHA-256 is enough to store them."""
    return hashlib.sha256(value.encode()).hexdigest()


def begin(
    *,
    db: Session,
    provider: OpenIdProvider,
    redirect_uri: str,
    code_challenge: str,
    app_state: str | None,
) -> str:
    """Remember the sign-in; return the provider's authorisation URL to send the browser to."""
    db.execute(delete(OidcLogin).where(OidcLogin.expires_at < utcnow()))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    db.add(
        OidcLogin(
            provider=provider.name,
            state_digest=_digest(state),
            nonce=nonce,
            provider_verifier=verifier,
            app_challenge=code_challenge,
            app_redirect_uri=redirect_uri,
            app_state=app_state,
            expires_at=utcnow() + timedelta(minutes=LOGIN_MINUTES),
        )
    )
    db.flush()
    return provider.authorization_url(state=state, nonce=nonce, verifier=verifier)


def _claim_state(db: Session, provider: OpenIdProvider, state: str) -> tuple[OidcLogin, str]:
    """The sign-in this state opened, claimed once (a replayed state finds nothing), and the
    one-time code the app will get for it (only its digest is stored)."""
    login = db.scalar(
        select(OidcLogin).where(
            OidcLogin.state_digest == _digest(state), OidcLogin.provider == provider.name
        )
    )
    if login is None or login.expires_at <= utcnow():
        raise errors.OidcStateInvalid("No sign-in under way has this state; start again")
    code = secrets.token_urlsafe(32)
    claimed = db.execute(
        update(OidcLogin)
        .where(OidcLogin.id == login.id, OidcLogin.code_digest.is_(None))
        .values(code_digest=_digest(code), expires_at=utcnow() + timedelta(seconds=CODE_SECONDS))
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise errors.OidcStateInvalid("This sign-in was already answered; start again")
    db.expire(login)
    return login, code


def app_redirect(login: OidcLogin, **params: str) -> str:
    """The app's redirect URI with `params` (and the app's own state) added to its query."""
    if login.app_state:
        params["state"] = login.app_state
    parts = urlsplit(login.app_redirect_uri)
    query = "&".join(p for p in (parts.query, urlencode(params)) if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def complete(
    *, db: Session, provider: OpenIdProvider, state: str, code: str | None, error: str | None
) -> tuple[OidcLogin, str]:
    """Answer the provider's redirect: (the login, the URL that sends the app back).

    The code exchange and every check of the ID token happen here; a refusal raises
    (problem+json to the browser). The provider's own `error` goes back to the app.
    """
    login, one_time = _claim_state(db, provider, state)
    if error or not code:
        db.commit()
        return login, app_redirect(login, error=error or "invalid_request")
    identity = provider.finish(code=code, verifier=login.provider_verifier, nonce=login.nonce)
    login.identity = identity.as_dict()
    return login, app_redirect(login, code=one_time)


def redeem(*, db: Session, code: str, verifier: str) -> tuple[str, ProviderIdentity]:
    """The app's one-time code and PKCE verifier: (provider name, identity). Once only.

    A wrong verifier spends the code too: it may not be guessed at.
    """
    login = db.scalar(select(OidcLogin).where(OidcLogin.code_digest == _digest(code)))
    if login is None or login.redeemed_at is not None or login.expires_at <= utcnow():
        raise errors.OidcCodeInvalid()
    spent = db.execute(
        update(OidcLogin)
        .where(OidcLogin.id == login.id, OidcLogin.redeemed_at.is_(None))
        .values(redeemed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if spent != 1:
        raise errors.OidcCodeInvalid()
    expected = create_s256_code_challenge(verifier)
    if not hmac.compare_digest(expected.encode(), login.app_challenge.encode()):
        db.commit()
        raise errors.PkceMismatch()
    if login.identity is None:
        raise errors.OidcCodeInvalid()
    return login.provider, ProviderIdentity.from_dict(login.identity)


def _find_identity(db: Session, provider: str, subject: str) -> OidcIdentity | None:
    return db.scalar(
        select(OidcIdentity).where(
            OidcIdentity.provider == provider, OidcIdentity.subject == subject
        )
    )


def _remember(db: Session, link: OidcIdentity, identity: ProviderIdentity) -> None:
    """Keep the provider's tokens (sealed) and its session id for a back-channel logout."""
    link.provider_sub = identity.provider_sub
    link.session_id = identity.session_id
    link.last_sign_in_at = utcnow()
    if identity.access_token:
        link.access_token = identity.access_token
        link.refresh_token = identity.refresh_token
        link.access_expires_at = _expiry(identity.expires_in)


def _expiry(expires_in: int | None) -> datetime | None:
    return utcnow() + timedelta(seconds=expires_in) if expires_in else None


def user_for(*, db: Session, provider: OpenIdProvider, identity: ProviderIdentity) -> User:
    """The account this identity opens: linked before, pre-linked by an admin (the IdNat_PS
    in `cps_id`, for PSC; the username, for an IdP), or made now if JIT is on."""
    settings = provider.settings
    link = _find_identity(db, provider.name, identity.subject)
    user = db.get(User, link.user_id) if link is not None else None
    if user is None and settings.kind == "psc":
        user = users.find_user_by_cps_id(db=db, professional_id=identity.subject)
    if user is None and settings.kind == "idp":
        user = users.find_user(db=db, username=identity.subject)
    if user is None and settings.jit_provisioning:
        username = identity.subject if settings.kind == "idp" else f"psc-{identity.subject}"
        user = users.create_user(
            db=db,
            username=username,
            password=secrets.token_urlsafe(32),  # nobody knows it: this user signs in here
            display_name=identity.display_name,
        )
        if settings.kind == "psc":
            user.cps_id = identity.subject
    if user is None:
        raise errors.AccountNotProvisioned(
            "This professional has no account here; ask the establishment's administrator"
        )
    if user.disabled:
        raise errors.AccountNotProvisioned("This account is disabled")
    users.ensure_not_locked(user)
    if link is None:
        link = OidcIdentity(user_id=user.id, provider=provider.name, subject=identity.subject)
        db.add(link)
    _remember(db, link, identity)
    if settings.kind == "idp" and settings.admin_claim:
        user.is_admin = identity.is_admin
    db.flush()
    return user


def link(*, db: Session, user: User, provider: OpenIdProvider, identity: ProviderIdentity) -> None:
    """Link a signed-in user's account to this identity, once (409 if someone else has it)."""
    existing = _find_identity(db, provider.name, identity.subject)
    if existing is not None and existing.user_id != user.id:
        raise errors.OidcIdentityTaken()
    if provider.settings.kind == "psc":
        holder = users.find_user_by_cps_id(db=db, professional_id=identity.subject)
        if holder is not None and holder.id != user.id:
            raise errors.OidcIdentityTaken()
    if existing is None:
        existing = OidcIdentity(user_id=user.id, provider=provider.name, subject=identity.subject)
        db.add(existing)
    _remember(db, existing, identity)
    db.flush()


def end_provider_sessions(
    *, db: Session, provider: OpenIdProvider, sub: str | None, sid: str | None
) -> list[User]:
    """A back-channel logout: every session its user opened through this provider ends."""
    matches = [OidcIdentity.provider_sub == sub] if sub else []
    if sid:
        matches.append(OidcIdentity.session_id == sid)
    links = db.scalars(
        select(OidcIdentity).where(OidcIdentity.provider == provider.name, or_(*matches))
    ).all()
    ended: list[User] = []
    for found in links:
        devices = db.scalars(
            select(Device).where(
                Device.user_id == found.user_id,
                Device.revoked_at.is_(None),
                Device.auth_method.in_(PROVIDER_METHODS[provider.settings.kind]),
            )
        ).all()
        for device in devices:
            device_service.revoke_device(db=db, device=device)
        found.session_id = None
        user = db.get(User, found.user_id)
        if user is not None:
            ended.append(user)
    db.flush()
    return ended
