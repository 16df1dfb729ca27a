"""`make run`'s "sign in with PSC (demo)": a local OpenID provider standing for Pro Santé
Connect, with one demo e-CPS user pre-linked to the demo account.

`start_provider` runs the devtools provider (oidc-provider, as the tests do) and returns
the gateway settings that point at it. `python -m devtools.psc_demo` then plays the
mobile app's RFC 8252 flow against the running demo: /start, the provider's page (which
signs the demo e-CPS user in without a form), the callback, and /exchange with the PKCE
verifier; it prints the session the app would get.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from devtools.oidc_provider import OidcProvider

DEMO_RPPS = "810100000001"  # the IdNat_PS of the demo e-CPS user: 8 + an RPPS number
DEMO_REDIRECT = "fr.estafette.demo:/oidc"
CLIENT_ID = "estafette-demo"


def _private_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def start_provider(var_dir: Path, host: str, port: int) -> tuple[OidcProvider, dict[str, str]]:
    """The running demo provider, and the ESTAFETTE_* settings that sign in with it."""
    gateway = f"http://{host}:{port}"
    secret = secrets.token_urlsafe(32)
    provider = OidcProvider(
        var_dir / "demo-oidc-provider",
        clients=[
            {
                "client_id": CLIENT_ID,
                "client_secret": secret,
                "redirect_uris": [f"{gateway}/api/v1/auth/oidc/psc/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "backchannel_logout_uri": f"{gateway}/api/v1/auth/oidc/psc/backchannel-logout",
                "backchannel_logout_session_required": True,
            }
        ],
        accounts={
            DEMO_RPPS: {
                "SubjectNameID": DEMO_RPPS,
                "given_name": "Camille",
                "family_name": "MARTIN",
                "preferred_username": DEMO_RPPS,
                "SubjectRefPro": {
                    "codeCivilite": "DR",
                    "exercices": [{"codeProfession": "10", "codeSavoirFaire": "SM04"}],
                },
            }
        },
        default_login={"account": DEMO_RPPS, "acr": "eidas1", "amr": ["mfa"]},
    ).start()
    secret_file = _private_file(var_dir / "demo-psc-client-secret", secret)
    providers = _private_file(
        var_dir / "demo-oidc-providers.json",
        json.dumps(
            {
                "psc": {
                    "kind": "psc",
                    "issuer": provider.issuer,
                    "client_id": CLIENT_ID,
                    "client_secret_file": str(secret_file),
                }
            }
        ),
    )
    _private_file(var_dir / "demo-psc.json", json.dumps({"gateway": gateway}))
    return provider, {
        "ESTAFETTE_OIDC_PROVIDERS": str(providers),
        "ESTAFETTE_OIDC_REDIRECT_URIS": DEMO_REDIRECT,
        "ESTAFETTE_PUBLIC_URL": gateway,
    }


def sign_in(gateway: str) -> dict:
    """The app's side of the flow; the browser's part is played by httpx."""
    verifier = secrets.token_urlsafe(48)
    with httpx.Client(timeout=15) as browser:
        response = browser.get(
            f"{gateway}/api/v1/auth/oidc/psc/start",
            params={
                "redirect_uri": DEMO_REDIRECT,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            },
        )
        for _ in range(12):
            if response.status_code not in (302, 303):
                sys.exit(f"sign-in stopped: HTTP {response.status_code} {response.text[:300]}")
            location = str(response.url.join(response.headers["location"]))
            if location.startswith(DEMO_REDIRECT):
                code = httpx.URL(location).params["code"]
                break
            response = browser.get(location)
        else:
            sys.exit("sign-in stopped: too many redirects")
        session = browser.post(
            f"{gateway}/api/v1/auth/oidc/exchange",
            json={
                "code": code,
                "code_verifier": verifier,
                "device": {"name": "Demo e-CPS", "platform": "android"},
            },
        )
    if session.status_code != 200:
        sys.exit(f"exchange refused: HTTP {session.status_code} {session.text[:300]}")
    return session.json()


def main() -> None:
    var_dir = Path(os.environ.get("ESTAFETTE_VAR_DIR") or "var")
    described = var_dir / "demo-psc.json"
    if not described.is_file():
        sys.exit("start the demo first: make run")
    session = sign_in(json.loads(described.read_text())["gateway"])
    print(json.dumps(session, indent=2))


if __name__ == "__main__":
    main()
