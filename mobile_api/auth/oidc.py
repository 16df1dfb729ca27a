"""Sign-in with Pro Santé Connect (e-CPS, CPS card) or the establishment's IdP (RFC 8252).

The app opens the system browser on /start; the provider sends the browser back to
/callback, where the gateway redeems the provider's code and checks its ID token; the
browser then goes back to the app with a one-time code, which the app redeems at
/exchange with its PKCE verifier for the usual device-bound session pair. The web client
takes the same path with a same-site redirect URI. The provider's tokens stay here.
"""

from __future__ import annotations

from flask import g, redirect, request
from flask_smorest import Blueprint
from werkzeug.wrappers import Response

from backend import errors
from backend.accounts import oidc_logins
from backend.accounts.openid import OpenIdProvider
from backend.audit.trail import Actor, Outcome
from mobile_api.auth import oidc_schemas as schemas
from mobile_api.auth.routes import _open_session
from mobile_api.auth.schemas import SessionSchema
from mobile_api.auth.tokens import session_required
from mobile_api.context import client_ip, current_actor, db, services
from mobile_api.errors import documented_problems
from mobile_api.limits import LOGIN_PER_IP, limiter

blp = Blueprint(
    "oidc",
    __name__,
    url_prefix="/api/v1/auth/oidc",
    description="Sign-in with Pro Santé Connect or the establishment's identity provider",
)

_UNKNOWN = "`oidc_provider_unknown`: no provider by this name is configured."
_CHECKS_FAILED = (
    "`oidc_signature_invalid`, `oidc_token_expired`, `oidc_audience_mismatch`, "
    "`oidc_issuer_mismatch`, `oidc_nonce_mismatch`, `oidc_acr_insufficient` or "
    "`oidc_token_rejected`: the provider's ID token failed that check."
)
_RATE_LIMITED = "`rate_limited`: too many sign-ins from this address; see Retry-After."
_CODE_REFUSALS = (
    "`oidc_code_invalid` (unknown, used or expired one-time code) or `pkce_mismatch` "
    "(the verifier does not match the challenge given to /start)."
)


def _audit(action: str, outcome: Outcome = Outcome.OK, **details: object) -> None:
    services().audit.record(action, actor=current_actor(), outcome=outcome, details=details or None)


def callback_url(name: str) -> str:
    """The redirect URI registered with the provider: ESTAFETTE_PUBLIC_URL's, or ours."""
    base = services().settings.public_url or request.url_root.rstrip("/")
    return f"{base}/api/v1/auth/oidc/{name}/callback"


def _provider(name: str) -> OpenIdProvider:
    for settings in services().settings.oidc_providers:
        if settings.name == name:
            return OpenIdProvider(settings, callback_url(name))
    raise errors.OidcProviderUnknown()


@blp.get("/<provider>/start")
@limiter.limit(LOGIN_PER_IP)
@blp.arguments(schemas.OidcStartSchema, location="query")
@blp.response(302, description="To the provider's sign-in page")
@blp.doc(security=[])
@documented_problems(
    blp,
    {
        400: "`redirect_uri_not_allowed`: the establishment did not allow this redirect URI.",
        404: _UNKNOWN,
        429: _RATE_LIMITED,
        502: "`oidc_provider_failed`: the provider's discovery could not be read.",
    },
)
def start(query: dict, provider: str) -> Response:
    """Open the system browser here: it is sent on to the provider's sign-in page.

    `code_challenge` is BASE64URL(SHA-256(verifier)) of a verifier the app keeps for
    /exchange (RFC 7636, S256 only); `state`, if given, comes back with the code."""
    chosen = _provider(provider)
    if query["redirect_uri"] not in services().settings.oidc_redirect_uris:
        raise errors.RedirectUriNotAllowed(
            "Use one of the redirect URIs the establishment allowed (ESTAFETTE_OIDC_REDIRECT_URIS)"
        )
    url = oidc_logins.begin(
        db=db(),
        provider=chosen,
        redirect_uri=query["redirect_uri"],
        code_challenge=query["code_challenge"],
        app_state=query.get("state"),
    )
    db().commit()
    return redirect(url, 302)


@blp.get("/<provider>/callback")
@blp.arguments(schemas.OidcCallbackSchema, location="query")
@blp.response(302, description="Back to the app, with a one-time code (or `error`)")
@blp.doc(security=[])
@documented_problems(
    blp,
    {
        400: "`oidc_state_invalid`: no sign-in under way has this state (wrong, replayed "
        "or expired).",
        401: _CHECKS_FAILED,
        404: _UNKNOWN,
        502: "`oidc_provider_failed`: the provider refused its own code, or is unreachable.",
    },
)
def callback(query: dict, provider: str) -> Response:
    """Where the provider sends the browser back (register it with the provider)."""
    chosen = _provider(provider)
    try:
        if query.get("iss") is not None and query["iss"] != chosen.settings.issuer:
            raise errors.OidcIssuerMismatch("the answer names another issuer (RFC 9207)")
        _login, url = oidc_logins.complete(
            db=db(),
            provider=chosen,
            state=query["state"],
            code=query.get("code"),
            error=query.get("error"),
        )
    except errors.EstafetteError as exc:
        db().commit()  # the state stays spent
        _audit("auth.oidc_callback", Outcome.REFUSED, provider=provider, reason=exc.code)
        raise
    db().commit()
    _audit("auth.oidc_callback", provider=provider)
    return redirect(url, 302)


@blp.post("/exchange")
@limiter.limit(LOGIN_PER_IP)
@blp.arguments(schemas.OidcExchangeSchema)
@blp.response(200, SessionSchema)
@blp.doc(security=[])
@documented_problems(
    blp,
    {
        401: _CODE_REFUSALS,
        429: _RATE_LIMITED,
        403: "`account_not_provisioned`: this professional has no account here (and the "
        "establishment does not create them on first sign-in).",
    },
)
def exchange(body: dict) -> dict:
    """Redeem the one-time code with the app's PKCE verifier: a device-bound session."""
    try:
        name, identity = oidc_logins.redeem(
            db=db(), code=body["code"], verifier=body["code_verifier"]
        )
        chosen = _provider(name)
        user = oidc_logins.user_for(db=db(), provider=chosen, identity=identity)
    except errors.EstafetteError as exc:
        db().commit()  # the code stays spent
        _audit("auth.oidc_exchange", Outcome.REFUSED, reason=exc.code)
        raise
    g.user = user
    g.actor = Actor(user=user.public_id, source_ip=client_ip())
    return _open_session(body["device"], identity.method)


@blp.post("/link")
@blp.arguments(schemas.OidcLinkSchema)
@blp.response(200, schemas.OidcLinkResultSchema)
@documented_problems(
    blp,
    {
        401: _CODE_REFUSALS,
        409: "`oidc_identity_taken`: this identity belongs to another account.",
    },
)
@session_required
def link(body: dict) -> dict:
    """Link the signed-in account to the identity of a sign-in just made at the provider
    (its one-time code and verifier): from then on, that provider opens this account."""
    try:
        name, identity = oidc_logins.redeem(
            db=db(), code=body["code"], verifier=body["code_verifier"]
        )
        oidc_logins.link(db=db(), user=g.user, provider=_provider(name), identity=identity)
    except errors.EstafetteError as exc:
        db().commit()
        _audit("auth.oidc_link", Outcome.REFUSED, reason=exc.code)
        raise
    db().commit()
    _audit("auth.oidc_link", provider=name, method=identity.method)
    return {"provider": name, "method": identity.method}


@blp.post("/<provider>/backchannel-logout")
@blp.arguments(schemas.LogoutTokenSchema, location="form")
@blp.response(200, description="The user's sessions through this provider have ended")
@blp.doc(security=[])
@documented_problems(
    blp,
    {
        400: "`logout_token_invalid`: the logout token failed a check.",
        404: _UNKNOWN,
    },
)
def backchannel_logout(form: dict, provider: str) -> str:
    """OIDC Back-Channel Logout 1.0: the provider ends the user's sessions here."""
    chosen = _provider(provider)
    try:
        sub, sid = chosen.logout_claims(form["logout_token"])
    except errors.OidcTokenRejected as exc:
        _audit("auth.backchannel_logout", Outcome.REFUSED, provider=provider, reason=exc.code)
        raise errors.LogoutTokenRejected(exc.detail) from exc
    ended = oidc_logins.end_provider_sessions(db=db(), provider=chosen, sub=sub, sid=sid)
    db().commit()
    for user in ended:
        services().audit.record(
            "auth.backchannel_logout",
            actor=Actor(user=user.public_id, source_ip=client_ip()),
            details={"provider": provider},
        )
    return ""
