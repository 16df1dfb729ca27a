"""The relying party: one OpenID Connect client for every provider, on Authlib and joserfc.

Pro Santé Connect and an establishment's IdP (Keycloak, LemonLDAP::NG, AD FS) differ
only in their settings (`OidcProviderSettings`) and in how their claims name a user
(`identity_from`). Discovery and the JWKS are cached per issuer; an unknown `kid` fetches
the JWKS once more (key rotation) before the token is refused. Every check of an ID
token or of a logout token raises an `errors.OidcTokenRejected` whose code names it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from backend import errors
from backend.config import OidcProviderSettings

TIMEOUT_SECONDS = 10.0
METADATA_SECONDS = 3600.0
LEEWAY_SECONDS = 30
ALGORITHMS = ["RS256", "PS256", "ES256", "RS512", "PS512", "ES384", "EdDSA"]
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# RFC 8176: a smart card (the CPS card read through PSC) or a hardware key.
CARD_AMR = ("sc", "hwk")


@dataclass(frozen=True)
class ProviderIdentity:
    """What a provider said about the person who signed in, once every check passed."""

    subject: str  # the stable key: SubjectNameID for PSC, the user claim for an IdP
    provider_sub: str
    method: str  # psc_ecps, psc_card or idp
    display_name: str | None
    is_admin: bool
    session_id: str | None
    access_token: str | None
    refresh_token: str | None
    expires_in: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderIdentity:
        return cls(**data)


class RefreshRefused(Exception):
    """The provider answered the refresh with an OAuth error (invalid_grant: the session
    is over or consent withdrawn): only a new sign-in helps."""


@dataclass(frozen=True)
class ProviderTokens:
    access_token: str
    refresh_token: str | None
    expires_in: int | None


class _Cache:
    """Discovery documents and key sets by URL, for METADATA_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, url: str, fetch: Any, *, fresh: bool = False) -> Any:
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None and not fresh and time.monotonic() < entry[0]:
                return entry[1]
        value = fetch()
        with self._lock:
            self._entries[url] = (time.monotonic() + METADATA_SECONDS, value)
        return value


_cache = _Cache()


class OpenIdProvider:
    """One configured provider; `callback_url` is the gateway's redirect URI there."""

    def __init__(self, settings: OidcProviderSettings, callback_url: str) -> None:
        self.settings = settings
        self.callback_url = callback_url

    @property
    def name(self) -> str:
        return self.settings.name

    # -- discovery ---------------------------------------------------------------------

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=TIMEOUT_SECONDS, verify=self.settings.tls_verify)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise errors.OidcProviderFailed(
                f"{self.name}: {url} could not be read ({type(exc).__name__})"
            ) from exc
        if not isinstance(document, dict):
            raise errors.OidcProviderFailed(f"{self.name}: {url} is not a JSON object")
        return document

    def metadata(self) -> dict[str, Any]:
        url = f"{self.settings.issuer}/.well-known/openid-configuration"
        document = _cache.get(url, lambda: self._get_json(url))
        if document.get("issuer") != self.settings.issuer:
            raise errors.OidcProviderFailed(f"{self.name}: the discovery names another issuer")
        return document

    def _keys(self, *, fresh: bool = False) -> KeySet:
        url = self.metadata()["jwks_uri"]
        return _cache.get(url, lambda: KeySet.import_key_set(self._get_json(url)), fresh=fresh)

    # -- the authorisation code flow ---------------------------------------------------

    def _session(self) -> OAuth2Session:
        settings = self.settings
        session = OAuth2Session(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            # tls_client_auth (RFC 8705): the certificate authenticates, the form names us.
            token_endpoint_auth_method="client_secret_basic" if settings.client_secret else "none",
            scope=" ".join(settings.scopes),
            redirect_uri=self.callback_url,
            code_challenge_method="S256",
        )
        if settings.client_cert is not None:
            session.cert = (
                (str(settings.client_cert), str(settings.client_key))
                if settings.client_key
                else str(settings.client_cert)
            )
        session.verify = self.settings.tls_verify
        return session

    def authorization_url(self, *, state: str, nonce: str, verifier: str) -> str:
        extra: dict[str, str] = {"nonce": nonce}
        if self.settings.acr_values:
            extra["acr_values"] = " ".join(self.settings.acr_values)
        with self._session() as session:
            url, _state = session.create_authorization_url(
                self.metadata()["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                **extra,
            )
        return url

    def finish(self, *, code: str, verifier: str, nonce: str) -> ProviderIdentity:
        """Redeem the provider's code, check its ID token, read the user's claims."""
        metadata = self.metadata()
        with self._session() as session:
            try:
                token = session.fetch_token(
                    metadata["token_endpoint"],
                    code=code,
                    code_verifier=verifier,
                    timeout=TIMEOUT_SECONDS,
                )
            except (OAuthError, requests.RequestException) as exc:
                raise errors.OidcProviderFailed(
                    f"{self.name}: the token endpoint refused the code ({_reason(exc)})"
                ) from exc
            id_claims = self.id_token_claims(token.get("id_token"), nonce=nonce)
            claims = dict(id_claims)
            if metadata.get("userinfo_endpoint"):
                try:
                    # Not session.get(): Authlib would refresh a token it deems near expiry.
                    response = requests.get(
                        metadata["userinfo_endpoint"],
                        headers={"Authorization": f"Bearer {token['access_token']}"},
                        timeout=TIMEOUT_SECONDS,
                        verify=self.settings.tls_verify,
                        cert=session.cert,
                    )
                    response.raise_for_status()
                    userinfo = response.json()
                except (requests.RequestException, ValueError) as exc:
                    raise errors.OidcProviderFailed(
                        f"{self.name}: userinfo could not be read ({type(exc).__name__})"
                    ) from exc
                if userinfo.get("sub") != id_claims["sub"]:  # OIDC Core §5.3.4
                    raise errors.OidcTokenRejected("userinfo names another subject")
                claims.update(userinfo)
        return self.identity_from(
            claims,
            id_claims,
            ProviderTokens(
                token["access_token"], token.get("refresh_token"), _seconds(token.get("expires_in"))
            ),
        )

    def refresh(self, refresh_token: str) -> ProviderTokens:
        """A new access token; `OidcProviderFailed` when the provider refuses (session over,
        consent withdrawn)."""
        with self._session() as session:
            try:
                token = session.refresh_token(
                    self.metadata()["token_endpoint"],
                    refresh_token=refresh_token,
                    timeout=TIMEOUT_SECONDS,
                )
            except OAuthError as exc:
                raise RefreshRefused(_reason(exc)) from exc
            except requests.RequestException as exc:
                raise errors.OidcProviderFailed(
                    f"{self.name}: the token endpoint is unreachable ({_reason(exc)})"
                ) from exc
        return ProviderTokens(
            token["access_token"],
            token.get("refresh_token") or refresh_token,
            _seconds(token.get("expires_in")),
        )

    # -- tokens ------------------------------------------------------------------------

    def _decode(self, value: Any) -> jwt.Token:
        if not isinstance(value, str) or not value:
            raise errors.OidcTokenRejected("the provider sent no token")
        try:
            try:
                return jwt.decode(value, self._keys(), algorithms=ALGORITHMS)
            except jose_errors.InvalidKeyIdError:
                return jwt.decode(value, self._keys(fresh=True), algorithms=ALGORITHMS)
        except (jose_errors.InvalidKeyIdError, jose_errors.BadSignatureError) as exc:
            raise errors.OidcSignatureInvalid() from exc
        except (jose_errors.JoseError, ValueError) as exc:
            raise errors.OidcTokenRejected(f"unreadable token ({type(exc).__name__})") from exc

    def _validate(self, claims: dict[str, Any], **options: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            iat={"essential": True},
            **options,
        )
        try:
            registry.validate(claims)
        except jose_errors.ExpiredTokenError as exc:
            raise errors.OidcTokenExpired() from exc
        except (jose_errors.InvalidClaimError, jose_errors.MissingClaimError) as exc:
            error = _CLAIM_ERRORS.get(exc.claim, errors.OidcTokenRejected)
            raise error(f"claim {exc.claim!r}: {exc.description}") from exc
        except jose_errors.JoseError as exc:
            raise errors.OidcTokenRejected(str(exc)) from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise errors.OidcAudienceMismatch("several audiences, and we are not the azp")

    def id_token_claims(self, id_token: Any, *, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature, iss, aud, exp, nonce and acr pass."""
        claims = self._decode(id_token).claims
        self._validate(
            claims,
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        if self.settings.acr_values and claims.get("acr") not in self.settings.acr_values:
            raise errors.OidcAcrInsufficient(
                f"acr {claims.get('acr')!r} is none of {', '.join(self.settings.acr_values)}"
            )
        return claims

    def logout_claims(self, logout_token: Any) -> tuple[str | None, str | None]:
        """(sub, sid) of a valid logout token (OIDC Back-Channel Logout 1.0 §2.6)."""
        claims = self._decode(logout_token).claims
        self._validate(claims, exp={"essential": False})
        events = claims.get("events")
        if not isinstance(events, dict) or BACKCHANNEL_EVENT not in events:
            raise errors.OidcTokenRejected("not a back-channel logout token")
        if "nonce" in claims:
            raise errors.OidcTokenRejected("a logout token carries no nonce")
        sub, sid = claims.get("sub"), claims.get("sid")
        if not sub and not sid:
            raise errors.OidcTokenRejected("a logout token names a sub or a sid")
        return sub, sid

    # -- claims to a user --------------------------------------------------------------

    def identity_from(
        self, claims: dict[str, Any], id_claims: dict[str, Any], tokens: ProviderTokens
    ) -> ProviderIdentity:
        settings = self.settings
        subject = claims.get(settings.user_claim)
        if not isinstance(subject, str) or not subject.strip():
            raise errors.OidcTokenRejected(f"the provider gave no {settings.user_claim}")
        if settings.kind == "psc":
            amr = id_claims.get("amr") or []
            method = "psc_card" if any(v in CARD_AMR for v in amr) else "psc_ecps"
        else:
            method = "idp"
        names = [claims.get("given_name"), claims.get("family_name")]
        display = " ".join(n for n in names if isinstance(n, str) and n) or claims.get("name")
        return ProviderIdentity(
            subject=subject.strip(),
            provider_sub=id_claims["sub"],
            method=method,
            display_name=display if isinstance(display, str) else None,
            is_admin=self._grants_admin(claims),
            session_id=id_claims.get("sid"),
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_in=tokens.expires_in,
        )

    def _grants_admin(self, claims: dict[str, Any]) -> bool:
        claim, wanted = self.settings.admin_claim, self.settings.admin_value
        if not claim or not wanted:
            return False
        value = claims.get(claim)
        return wanted in value if isinstance(value, list) else value == wanted


_CLAIM_ERRORS: dict[str, type[errors.OidcTokenRejected]] = {
    "iss": errors.OidcIssuerMismatch,
    "aud": errors.OidcAudienceMismatch,
    "nonce": errors.OidcNonceMismatch,
    "exp": errors.OidcTokenExpired,
}


def _seconds(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reason(exc: Exception) -> str:
    return getattr(exc, "error", None) or type(exc).__name__
