"""JWT sessions on flask-jwt-extended, signed with Ed25519 (EdDSA), bound to a device.

Three token kinds: `mfa` (5 minutes, only for the second-factor calls), `access`
(10 minutes) and `refresh` (rotated on every use; a reused one revokes the device).
Each carries the user's credentials version (`cv`): after a password change, a TOTP
reset or a disable, the tokens taken before are refused. A device session lasts at most
ESTAFETTE_SESSION_MAX_DAYS from its sign-in (the device's `created_at`), refreshes or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt,
    verify_jwt_in_request,
)
from jwt import InvalidTokenError
from sqlalchemy import bindparam, select

from backend import errors
from backend.accounts import devices as device_service
from backend.audit.trail import Actor
from backend.config import Settings
from backend.storage.database import commit_without_flush_wait
from backend.storage.models import Device, User, utcnow
from mobile_api.context import client_ip, db, services
from mobile_api.errors import problem

MFA_TOKEN_MINUTES = 5
REFRESH_TOKEN_HOURS = 12

# How many verified tokens a process remembers: about one per device in use.
VERIFIED_TOKENS_KEPT = 20_000


class _Tokens(JWTManager):
    """flask-jwt-extended's manager, checking a token's signature once per process.

    Why: decoding checks the token's base64 in Python and its Ed25519 signature, about a
    third of a millisecond, and a device sends the same access token on every call for its
    whole lifetime. A token string that verified once has the same claims every time; what
    can change is checked on every call all the same: its expiry (here), its revocation
    (the blocklist loader) and the session behind it (`_load_session`). The memory is per
    keyring (`SigningKeys.verified`), so an app with other keys never trusts these.
    """

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict:
        if allow_expired or csrf_value is not None:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        verified = _signing_keys().verified
        claims = verified.get(encoded_token)
        leeway = current_app.config.get("JWT_DECODE_LEEWAY", 0)
        if claims is None or not time.time() < claims["exp"] + leeway:  # PyJWT's rule
            claims = super()._decode_jwt_from_config(encoded_token)  # raises if expired
            if "exp" not in claims:
                return claims  # never expires: not one of ours, never remembered
            if len(verified) >= VERIFIED_TOKENS_KEPT:
                verified.clear()  # simplest bound: the next calls verify once more
            verified[encoded_token] = claims
        return dict(claims)  # the caller's own copy


jwt = _Tokens()


def _key_pair(secret: str) -> tuple[bytes, bytes]:
    """Derive an Ed25519 pair from a secret so every api replica agrees."""
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"estafette-jwt", info=b"ed25519"
    ).derive(secret.encode())
    private = Ed25519PrivateKey.from_private_bytes(seed)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


class SigningKeys:
    """The signing keyring (ESTAFETTE_SIGNING_KEYS): the first key signs, every key verifies.

    A token names its key in the `kid` header. Rotating adds a key in front and keeps the
    old one until the last token it signed has expired, so nobody is signed out. Tokens
    from before `kid` existed were signed with ESTAFETTE_SECRET_KEY's key: they verify
    while that key is still in the ring.
    """

    def __init__(self, ring: tuple[tuple[str, str], ...], secret_key: str) -> None:
        self.current = ring[0][0]
        self.private_pem = _key_pair(ring[0][1])[0]
        self._public = {key_id: _key_pair(secret)[1] for key_id, secret in ring}
        self._without_kid = next((kid for kid, secret in ring if secret == secret_key), None)

        # Tokens whose signature this process checked, with their claims: see `_Tokens`.
        self.verified: dict[str, dict] = {}

    def public_key(self, header: dict) -> bytes:
        """The key that verifies a token with this (unverified) header; unknown: refused."""
        key_id = header.get("kid", self._without_kid)
        if key_id not in self._public:
            raise InvalidTokenError("the token was signed by a key this gateway does not hold")
        return self._public[key_id]


# Set on views that need a token: "access" or "refresh".
NEEDS_ATTRIBUTE = "_estafette_needs"
# Which credential a view takes, for the OpenAPI document (`mobile_api.openapi_contract`):
# "mfa", "session", "refresh" or "admin". A view without it is open to anyone.
CREDENTIAL_ATTRIBUTE = "_estafette_credential"


def init_jwt(app: Flask, settings: Settings) -> None:
    keys = SigningKeys(settings.signing_keys, settings.secret_key)
    app.extensions["estafette_signing_keys"] = keys
    app.config.update(
        JWT_ALGORITHM="EdDSA",
        JWT_DECODE_ALGORITHMS=["EdDSA"],
        JWT_PRIVATE_KEY=keys.private_pem,
        JWT_PUBLIC_KEY=keys.public_key({"kid": keys.current}),  # verification: `_verifying_key`
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(hours=REFRESH_TOKEN_HOURS),
        JWT_ERROR_MESSAGE_KEY="detail",
    )
    jwt.init_app(app)
    app.before_request(_token_first)


def _token_first() -> None:
    """A call that needs a token is refused for its token before its body is read.

    flask-smorest parses a body inside the view's decorators, wherever the token check
    sits among them: without this, a call with no token but a bad body got 422, telling
    an anonymous caller about the call's schema. `session_required` and `mfa_required`
    mark their views; the token is verified here, once (`_verify_token`).
    """
    view = current_app.view_functions.get(request.endpoint or "")
    kind = getattr(view, NEEDS_ATTRIBUTE, None)
    if kind is not None:
        _verify_token(kind)


def _verify_token(kind: str) -> None:
    """Verify the request's token ("access" or "refresh") unless this request already did:
    the hook above runs first, and the view's decorator must not decode it again."""
    if g.get("verified_token") != kind:
        verify_jwt_in_request(refresh=kind == "refresh")
        g.verified_token = kind


def _unauthorized(detail: str) -> Any:
    return problem(401, "unauthorized", "Authentication required", detail)


def _signing_keys() -> SigningKeys:
    return current_app.extensions["estafette_signing_keys"]


@jwt.additional_headers_loader
def _kid(identity: Any) -> dict[str, str]:
    return {"kid": _signing_keys().current}


@jwt.decode_key_loader
def _verifying_key(header: dict, payload: dict) -> bytes:
    return _signing_keys().public_key(header)


@jwt.unauthorized_loader
def _missing(reason: str) -> Any:
    return _unauthorized("Send Authorization: Bearer <token>")


@jwt.invalid_token_loader
def _invalid(reason: str) -> Any:
    return problem(401, "token_invalid", "Invalid token", "The token is malformed or forged")


@jwt.expired_token_loader
def _expired(header: dict, payload: dict) -> Any:
    return problem(401, "token_expired", "Token expired", "Refresh the session or sign in")


@jwt.revoked_token_loader
def _revoked(header: dict, payload: dict) -> Any:
    return problem(401, "token_revoked", "This session has ended", "Sign in again")


@jwt.needs_fresh_token_loader
def _not_fresh(header: dict, payload: dict) -> Any:
    return problem(401, "fresh_auth_required", "Recent sign-in required", "Sign in again")


@jwt.user_lookup_error_loader
def _no_user(header: dict, payload: dict) -> Any:
    return problem(401, "token_revoked", "This session has ended", "Sign in again")


@jwt.token_in_blocklist_loader
def _is_revoked(header: dict, payload: dict) -> bool:
    return services().revocations.is_revoked(payload["jti"])


def issue_mfa_token(user: User) -> str:
    return create_access_token(
        identity=user.public_id,
        additional_claims={"scope": "mfa", "cv": user.credentials_version},
        expires_delta=timedelta(minutes=MFA_TOKEN_MINUTES),
    )


def _session_end(device: Device) -> datetime:
    """The session's absolute end: its sign-in plus ESTAFETTE_SESSION_MAX_DAYS."""
    return device.created_at + timedelta(days=services().settings.session_max_days)


def issue_session(device: Device, user: User) -> dict[str, Any]:
    """A fresh access/refresh pair for `device`; the refresh jti is remembered for rotation.

    Neither token outlives the session's absolute end, so the last refresh hands out
    shorter tokens rather than extending the session.
    """
    claims = {"scope": "session", "dev": device.public_id, "cv": user.credentials_version}
    left = _session_end(device) - utcnow()
    access_for = min(timedelta(minutes=services().settings.access_token_minutes), left)
    access = create_access_token(
        identity=user.public_id, additional_claims=claims, fresh=True, expires_delta=access_for
    )
    refresh = create_refresh_token(
        identity=user.public_id,
        additional_claims=claims,
        expires_delta=min(timedelta(hours=REFRESH_TOKEN_HOURS), left),
    )
    device.refresh_jti = decode_token(refresh)["jti"]
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": int(access_for.total_seconds()),
        "device_id": device.public_id,
    }


def _expires(claims: dict) -> datetime:
    return datetime.fromtimestamp(claims["exp"], UTC)


def revoke_current_token() -> None:
    claims = get_jwt()
    services().revocations.revoke(claims["jti"], _expires(claims))


def _load_user(public_id: str) -> User:
    user = db().scalar(select(User).where(User.public_id == public_id))
    if user is None or user.disabled:
        raise errors.TokenRevoked()
    return user


def _ensure_current_credentials(claims: dict, user: User) -> None:
    """Refuse a token issued before the user's last credential change.

    Tokens from before the `cv` claim existed count as version 0: valid until the
    first change, so upgrading signs nobody out.
    """
    if claims.get("cv", 0) != user.credentials_version:
        raise errors.CredentialsChanged("The password or second factor changed; sign in again")


def mfa_required(view: Callable) -> Callable:
    """Only the 5-minute token from `/auth/login` opens these calls."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _verify_token("access")
        claims = get_jwt()
        if claims.get("scope") != "mfa":
            raise errors.Forbidden("this call needs the token from /auth/login")
        g.user = _load_user(claims["sub"])
        _ensure_current_credentials(claims, g.user)
        g.actor = Actor(user=g.user.public_id, source_ip=client_ip())
        return view(*args, **kwargs)

    setattr(wrapper, NEEDS_ATTRIBUTE, "access")
    setattr(wrapper, CREDENTIAL_ATTRIBUTE, "mfa")
    return wrapper


# Built once: every signed-in call runs it, and building it costs more than running it.
_SESSION = (
    select(User, Device)
    .join(Device, Device.user_id == User.id)
    .where(User.public_id == bindparam("sub"), Device.public_id == bindparam("dev"))
)


def _load_session(claims: dict) -> tuple[User, Device]:
    """The token's user and device, in one query: every signed-in call starts here."""
    row = db().execute(_SESSION, {"sub": claims["sub"], "dev": claims.get("dev")}).one_or_none()
    if row is None or row.User.disabled:
        raise errors.TokenRevoked()
    _ensure_current_credentials(claims, row.User)
    if row.Device.revoked_at is not None:
        raise errors.TokenRevoked()
    user, device = row.User, row.Device
    idle = timedelta(minutes=services().settings.session_idle_minutes)
    if utcnow() >= _session_end(device):
        _end_session(user, device, "session.expired")
        raise errors.SessionExpired(
            f"Sessions last at most {services().settings.session_max_days} days; sign in again"
        )
    if utcnow() - device.last_seen_at > idle:
        _end_session(user, device, "session.idle_timeout")
        raise errors.TokenRevoked("The session ended after inactivity; sign in again")
    return user, device


def _end_session(user: User, device: Device, action: str) -> None:
    """Sign the device out for good, and trace why."""
    device_service.revoke_device(db=db(), device=device)
    db().commit()
    services().audit.record(
        action,
        actor=Actor(user.public_id, device.public_id, client_ip()),
        target_type="device",
        target=device.public_id,
    )


def session_required(view: Callable | None = None, *, refresh: bool = False) -> Callable:
    """A signed-in device session: valid token, device not revoked, not idle too long."""

    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _verify_token("refresh" if refresh else "access")
            claims = get_jwt()
            if claims.get("scope") != "session":
                raise errors.Forbidden("this call needs a signed-in session")
            user, device = _load_session(claims)
            if not refresh and device_service.touch(device):
                commit_without_flush_wait(db())  # activity, not a promise: no WAL wait
            g.user, g.device, g.claims = user, device, claims
            g.actor = Actor(user=user.public_id, device=device.public_id, source_ip=client_ip())
            return fn(*args, **kwargs)

        setattr(wrapper, NEEDS_ATTRIBUTE, "refresh" if refresh else "access")
        setattr(wrapper, CREDENTIAL_ATTRIBUTE, "refresh" if refresh else "session")
        return wrapper

    return decorate(view) if view is not None else decorate


ADMIN_MFA_MINUTES = 10


# A CPS card, read here or through Pro Santé Connect, and e-CPS are strong factors in
# themselves, as fresh as the session they opened.
STRONG_METHODS = ("cps", "psc_card", "psc_ecps")


def has_fresh_second_factor(device: Device) -> bool:
    """A CPS card or e-CPS session, or a TOTP code verified on this device in the last 10
    minutes."""
    if device.auth_method in STRONG_METHODS:
        return True
    return utcnow() - device.authenticated_at <= timedelta(minutes=ADMIN_MFA_MINUTES)


def admin_required(view: Callable) -> Callable:
    """Administrators only, with a fresh second factor (POST /auth/otp/verify renews it).

    Put it right under the route decorator: the caller is checked before the body is read.
    """

    @session_required
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.user.is_admin:
            raise errors.Forbidden("administrators only")
        if not has_fresh_second_factor(g.device):
            raise errors.FreshMfaRequired(
                f"Confirm a one-time code with POST /api/v1/auth/otp/verify; admin calls need "
                f"a second factor from the last {ADMIN_MFA_MINUTES} minutes"
            )
        return view(*args, **kwargs)

    setattr(wrapper, CREDENTIAL_ATTRIBUTE, "admin")
    return wrapper
