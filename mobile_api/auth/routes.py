"""Sign-in: password then TOTP, or a CPS card; sessions bound to a device (API.md, "Sign-in")."""

from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint

from backend import crl, errors
from backend.accounts import cps, totp, users
from backend.accounts import devices as device_service
from backend.audit.trail import Actor, Outcome
from backend.storage.models import utcnow
from mobile_api.auth import schemas
from mobile_api.auth.oidc_schemas import SignInMethodsSchema
from mobile_api.auth.tokens import (
    issue_mfa_token,
    issue_session,
    mfa_required,
    revoke_current_token,
    session_required,
)
from mobile_api.context import client_ip, current_actor, db, peer_is_trusted_proxy, services
from mobile_api.errors import documented_problems
from mobile_api.limits import (
    LOGIN_PER_ACCOUNT,
    LOGIN_PER_ACCOUNT_AND_IP,
    LOGIN_PER_IP,
    OTP_PER_ACCOUNT,
    account_and_ip_from_body,
    account_from_body,
    account_from_token,
    limiter,
)

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-in")

_LOCKED = "`locked` after repeated failures, or `rate_limited`: wait `Retry-After` seconds."
_WRONG_CODE = "`otp_invalid`, `otp_replayed`, or a refused mfa token: sign in again."


def _audit(action: str, outcome: Outcome = Outcome.OK, **details: object) -> None:
    services().audit.record(action, actor=current_actor(), outcome=outcome, details=details or None)


def _refused(action: str, exc: errors.EstafetteError) -> None:
    """Keep failure counters, and trace the refusal (and a lock, as its own event)."""
    db().commit()
    _audit(action, outcome=Outcome.REFUSED, reason=exc.code)
    if isinstance(exc, errors.Locked) and exc.newly_locked:
        _audit("auth.locked", outcome=Outcome.REFUSED, reason="locked", seconds=exc.retry_after)


# The audit trail's names for how a session was opened (a device keeps its short ones).
AUDIT_METHODS = {"totp": "otp", "cps": "cps_card"}


def _open_session(spec: dict, method: str) -> dict:
    device = device_service.register_device(
        db=db(),
        user=g.user,
        name=spec["name"],
        platform=spec["platform"],
        push_token=spec.get("push_token"),
        auth_method=method,
    )
    if spec.get("push_key") and services().settings.push_previews:
        device.push_key = spec["push_key"]  # encrypted at rest; only this device can read
    session = issue_session(device, g.user)
    db().commit()
    g.actor = Actor(user=g.user.public_id, device=device.public_id, source_ip=client_ip())
    _audit("auth.session_open", method=AUDIT_METHODS.get(method, method))
    return session


@blp.get("/methods")
@blp.response(200, SignInMethodsSchema)
@blp.doc(security=[])
def methods() -> dict:
    """The providers one may sign in with besides password + TOTP, so that a client shows
    a button for each (start at `/auth/oidc/{name}/start`). Public: names and labels only."""
    providers = services().settings.oidc_providers
    return {"methods": [{"name": p.name, "kind": p.kind, "label": p.label} for p in providers]}


@blp.post("/login")
@limiter.limit(LOGIN_PER_IP)
@limiter.limit(LOGIN_PER_ACCOUNT_AND_IP, key_func=account_and_ip_from_body)
@limiter.limit(LOGIN_PER_ACCOUNT, key_func=account_from_body)
@blp.arguments(schemas.LoginSchema)
@blp.response(200, schemas.LoginResultSchema)
@documented_problems(blp, {401: "`invalid_credentials`: wrong username or password.", 429: _LOCKED})
def login(body: dict) -> dict:
    """First factor: password. Returns a 5-minute token for the second factor."""
    try:
        user = users.authenticate_password(
            db=db(), username=body["username"], password=body["password"]
        )
    except errors.EstafetteError as exc:
        _refused("auth.login", exc)
        raise
    db().commit()
    g.actor = Actor(user=user.public_id, source_ip=client_ip())
    _audit("auth.login", step="password")
    return {
        "mfa_token": issue_mfa_token(user),
        "mfa": ["totp"],
        "enrollment_required": not user.totp_active,
    }


@blp.post("/otp/enroll")
@blp.response(200, schemas.EnrollResultSchema)
@mfa_required
def enroll() -> dict:
    """Start TOTP enrolment: the secret, its otpauth:// URI and a QR code as SVG."""
    secret = users.begin_enrolment(db=db(), user=g.user)
    db().commit()
    _audit("auth.otp_enroll")
    uri = totp.provisioning_uri(secret, g.user.username)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": totp.qr_svg(uri)}


@blp.post("/otp/activate")
@blp.arguments(schemas.CodeSchema)
@blp.response(200, schemas.ActivateResultSchema)
@documented_problems(blp, {401: _WRONG_CODE, 429: _LOCKED})
@mfa_required
@limiter.limit(OTP_PER_ACCOUNT, key_func=account_from_token)
def activate(body: dict) -> dict:
    """Turn TOTP on with a first valid code; returns ten single-use recovery codes."""
    try:
        codes = users.activate_totp(db=db(), user=g.user, code=body["code"])
    except errors.EstafetteError as exc:
        _refused("auth.otp_activate", exc)
        raise
    db().commit()
    _audit("auth.otp_activate")
    return {"recovery_codes": codes}


@blp.post("/otp")
@blp.arguments(schemas.OtpSignInSchema)
@blp.response(200, schemas.SessionSchema)
@documented_problems(
    blp,
    {
        401: _WRONG_CODE,
        403: "`otp_not_enrolled`: enrol a second factor first; or `forbidden`.",
        429: _LOCKED,
    },
)
@mfa_required
@limiter.limit(OTP_PER_ACCOUNT, key_func=account_from_token)
def sign_in_with_otp(body: dict) -> dict:
    """Second factor: a TOTP code (or a recovery code). Opens a session for the device."""
    try:
        users.verify_second_factor(db=db(), user=g.user, code=body["code"])
    except errors.EstafetteError as exc:
        _refused("auth.otp", exc)
        raise
    session = _open_session(body["device"], "totp")
    revoke_current_token()  # the mfa token is single-use
    return session


@blp.post("/otp/verify")
@blp.arguments(schemas.CodeSchema)
@blp.response(204)
@documented_problems(blp, {401: _WRONG_CODE, 429: _LOCKED})
@session_required
@limiter.limit(OTP_PER_ACCOUNT, key_func=account_from_token)
def reverify(body: dict) -> None:
    """Confirm a TOTP code on the current session: renews the fresh second factor admins need."""
    try:
        users.verify_second_factor(db=db(), user=g.user, code=body["code"])
    except errors.EstafetteError as exc:
        _refused("auth.otp_verify", exc)
        raise
    g.device.authenticated_at = utcnow()
    db().commit()
    _audit("auth.otp_verify")


@blp.post("/cps")
@limiter.limit(LOGIN_PER_IP)
@blp.arguments(schemas.CpsSignInSchema)
@blp.response(200, schemas.SessionSchema)
@documented_problems(
    blp,
    {
        401: "`certificate_rejected`, `card_revoked` or `card_revocation_unknown`.",
        429: _LOCKED,
    },
)
def sign_in_with_cps(body: dict) -> dict:
    """CPS card: the certificate comes from the TLS proxy and is checked again here."""
    try:
        professional_id = _verified_card()
    except cps.CardRejected as exc:
        _audit("auth.cps", outcome=Outcome.REFUSED, reason=exc.reason)
        error = _CARD_ERRORS.get(exc.reason, errors.CertificateRejected)
        raise error(exc.detail) from exc
    user = users.find_user_by_cps_id(db=db(), professional_id=professional_id)
    if user is None or user.disabled:
        _audit("auth.cps", outcome=Outcome.REFUSED, reason="unknown_card")
        raise errors.CertificateRejected("This card is not registered with an account")
    try:
        users.ensure_not_locked(user)
    except errors.Locked as exc:
        _refused("auth.cps", exc)
        raise
    g.user = user
    return _open_session(body["device"], "cps")


_CARD_ERRORS: dict[str, type[errors.CertificateRejected]] = {
    "revoked": errors.CardRevoked,
    "revocation_unknown": errors.CardRevocationUnknown,
}


def _verified_card() -> str:
    if not peer_is_trusted_proxy():
        raise cps.CardRejected("untrusted_proxy", "Card sign-in must come through the TLS proxy")
    header = request.headers.get("X-Client-Cert", "")
    if not header or request.headers.get("X-Client-Verify") != "SUCCESS":
        raise cps.CardRejected("no_certificate", "No verified card certificate was presented")
    settings = services().settings
    trusted = cps.load_certificates(settings.card_ca_bundle) if settings.card_ca_bundle else []
    card = cps.verify_card(
        cps.parse_forwarded_certificate(header),
        trusted=trusted,
        crls=crl.load_crls(crl.crl_files(settings.crl_files, settings.var_dir)),
        policies=settings.card_policies,
    )
    return card.professional_id


@blp.post("/refresh")
@blp.response(200, schemas.SessionSchema)
@session_required(refresh=True)
def refresh() -> dict:
    """Rotate the pair. A refresh token presented twice revokes the whole device session."""
    if g.claims["jti"] != g.device.refresh_jti:
        device_service.revoke_device(db=db(), device=g.device)
        db().commit()
        _audit("auth.refresh_reuse", outcome=Outcome.REFUSED)
        raise errors.TokenRevoked("This refresh token was already used; the device is signed out")
    # No blocklist entry for the old refresh token: its jti no longer matches the device's,
    # which is how a replay is recognised (a blocklisted one would never get this far).
    device_service.touch(g.device)
    session = issue_session(g.device, g.user)
    db().commit()
    _audit("auth.refresh")
    return session


@blp.post("/logout")
@blp.response(204)
@session_required
def logout() -> None:
    """End this device's session: its tokens stop working on every api process at once."""
    device_service.revoke_device(db=db(), device=g.device)
    db().commit()
    revoke_current_token()
    _audit("auth.logout")
