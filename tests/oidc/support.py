"""The mobile app's side of an OpenID Connect sign-in (RFC 8252), played against the
gateway's test client and the real provider."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select

from backend.storage.database import session_scope
from backend.storage.models import User
from devtools.oidc_provider import OidcProvider
from tests.factories import create_user
from tests.support import body

PSC_CLIENT = "estafette-psc"
IDP_CLIENT = "estafette-idp"
APP_REDIRECT = "fr.estafette.app:/oidc"
WEB_REDIRECT = "https://estafette.chu-test.example/web/signed-in"
DEVICE = {"name": "iPhone de garde", "platform": "ios"}


def new_rpps() -> str:
    """A fresh IdNat_PS as PSC gives it: 8 then an 11-digit RPPS number."""
    return "8" + str(uuid.uuid4().int)[:11]


def psc_claims(national_id: str, given: str = "Camille", family: str = "MARTIN") -> dict:
    return {
        "SubjectNameID": national_id,
        "given_name": given,
        "family_name": family,
        "preferred_username": national_id,
        "SubjectRefPro": {
            "codeCivilite": "DR",
            "exercices": [
                {
                    "codeProfession": "10",
                    "codeCategorieProfessionnelle": "C",
                    "codeSavoirFaire": "SM26",
                    "nomExercice": family,
                    "prenomExercice": given,
                }
            ],
        },
    }


@dataclass
class Attempt:
    """One sign-in under way, as the app holds it."""

    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    app_state: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    callback_url: str = ""
    callback: Any = None

    @property
    def challenge(self) -> str:
        return create_s256_code_challenge(self.verifier)

    def returned(self) -> dict[str, str]:
        """The query the app was sent back with."""
        location = self.callback.headers["Location"]
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class MobileApp:
    def __init__(self, http: Any, provider: OidcProvider) -> None:
        self.http = http
        self.provider = provider

    def start(self, provider: str = "psc", redirect_uri: str = APP_REDIRECT) -> Any:
        attempt = Attempt()
        response = self.http.get(
            f"/api/v1/auth/oidc/{provider}/start",
            query_string={
                "redirect_uri": redirect_uri,
                "code_challenge": attempt.challenge,
                "code_challenge_method": "S256",
                "state": attempt.app_state,
            },
        )
        return attempt, response

    def through_provider(
        self,
        account: str,
        *,
        provider: str = "psc",
        acr: str = "eidas1",
        amr: tuple[str, ...] = ("mfa",),
        redirect_uri: str = APP_REDIRECT,
    ) -> Attempt:
        """Start, sign in at the provider, come back to the gateway's callback."""
        attempt, started = self.start(provider, redirect_uri)
        assert started.status_code == 302, body(started)
        attempt.callback_url = self.provider.sign_in(
            started.headers["Location"], account, acr=acr, amr=amr
        )
        parts = urlsplit(attempt.callback_url)
        attempt.callback = self.http.get(f"{parts.path}?{parts.query}")
        return attempt

    def exchange(self, code: str, verifier: str, device: dict | None = None) -> Any:
        return self.http.post(
            "/api/v1/auth/oidc/exchange",
            json={"code": code, "code_verifier": verifier, "device": device or DEVICE},
        )

    def sign_in(self, account: str, **options: Any) -> dict:
        """The whole flow; the session pair."""
        attempt = self.through_provider(account, **options)
        assert attempt.callback.status_code == 302, body(attempt.callback)
        returned = attempt.returned()
        assert returned["state"] == attempt.app_state
        session = self.exchange(returned["code"], attempt.verifier)
        assert session.status_code == 200, body(session)
        return body(session)


def professional(services, provider, national_id: str | None = None) -> tuple[str, str]:
    """A user pre-linked by their IdNat_PS (as for the CPS card), known to PSC too."""
    national_id = national_id or new_rpps()
    username = create_user(services)
    with session_scope(services.sessions) as db:
        db.scalar(select(User).where(User.username == username)).cps_id = national_id
    provider.add_accounts({national_id: psc_claims(national_id)})
    return username, national_id
