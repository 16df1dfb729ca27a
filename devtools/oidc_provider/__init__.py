"""A real OpenID provider for tests and the demo: the certified `oidc-provider` (npm).

Configured like Pro Santé Connect (its claims `SubjectNameID` and `SubjectRefPro`, the
scopes `openid scope_all`, acr `eidas1`, PKCE, introspection, back-channel logout, refresh
tokens). `server.mjs` says which testing hooks the fixture adds; they live here, never in
the product. The npm package is installed from the committed lock (`npm ci`) the first
time, into a git-ignored node_modules; without node or npm, `start()` fails saying so.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
START_TIMEOUT_SECONDS = 30.0
_install_lock = threading.Lock()


class ProviderUnavailable(RuntimeError):
    """The provider cannot start; the message says why (no node, npm ci failed...)."""


def ensure_installed() -> None:
    """`npm ci` from package-lock.json unless node_modules already matches it."""
    tools = {tool: shutil.which(tool) for tool in ("node", "npm")}
    for tool, path in tools.items():
        if path is None:
            raise ProviderUnavailable(
                f"{tool} is not installed: the OpenID provider fixture needs Node.js 20+ and "
                f"npm (Debian: apt-get install nodejs npm)"
            )
    lock = HERE / "package-lock.json"
    installed = HERE / "node_modules" / ".package-lock.json"
    # Test workers start at once: one installs while the others wait (a file lock).
    with _install_lock, (HERE / ".npm-install.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
            return
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [tools["npm"], "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ProviderUnavailable(f"npm ci failed in {HERE}: {done.stderr.strip()[-2000:]}")


class OidcProvider:
    """One `node server.mjs`; `issuer` is its URL once started. Use as a context manager."""

    def __init__(
        self,
        work_dir: Path,
        *,
        clients: list[dict[str, Any]],
        accounts: dict[str, dict[str, Any]],
        default_login: dict[str, Any] | None = None,
        port: int | None = None,
        access_token_seconds: int = 600,
    ) -> None:
        self.work_dir = work_dir
        self.config = {
            "clients": clients,
            "accounts": accounts,
            "default_login": default_login,
            "port": port,
            "access_token_seconds": access_token_seconds,
            "cookie_key": os.urandom(24).hex(),
        }
        self.issuer = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> OidcProvider:
        ensure_installed()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.work_dir / "oidc-provider.json"
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.config, fh)
        log = (self.work_dir / "oidc-provider.log").open("w")
        node = shutil.which("node")
        if node is None:
            raise ProviderUnavailable("node is not installed")
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [node, str(HERE / "server.mjs")],
            cwd=HERE,
            env={**os.environ, "OIDC_FIXTURE_CONFIG": str(config_file)},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        line = self._first_line()
        if not line.startswith("listening "):
            self.stop()
            reason = (self.work_dir / "oidc-provider.log").read_text()[-2000:]
            raise ProviderUnavailable(f"oidc-provider did not start: {line!r} {reason}")
        self.issuer = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def _first_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        found: list[str] = []
        reader = threading.Thread(
            target=lambda: found.append(self._process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        return found[0].strip() if found else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- testing hooks (server.mjs) --------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> None:
        response = httpx.post(f"{self.issuer}{path}", json=body, timeout=10)
        if response.status_code >= 400:
            raise AssertionError(f"{path}: {response.status_code} {response.text[:1000]}")

    def add_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        self._post("/devtools/accounts", accounts)

    def tamper_next_id_token(
        self, claims: dict[str, Any] | None = None, *, unknown_key: bool = False
    ) -> None:
        """The next token response carries a changed ID token, or one signed with a key the
        provider's JWKS does not publish."""
        self._post("/devtools/tamper", {"claims": claims or {}, "unknown_key": unknown_key})

    def backchannel_logout(self, client_id: str, account: str, sid: str | None = None) -> None:
        body = {"client_id": client_id, "account": account}
        if sid:
            body["sid"] = sid
        self._post("/devtools/backchannel-logout", body)

    def revoke_grants(self, account: str) -> None:
        """The user withdraws consent: the refresh tokens of every grant stop working."""
        self._post("/devtools/revoke-grants", {"account": account})

    def sign_in(
        self,
        authorize_url: str,
        account: str,
        *,
        acr: str = "eidas1",
        amr: tuple[str, ...] = ("mfa",),
    ) -> str:
        """Play the browser: follow the authorisation request, sign `account` in at the
        interaction page, and return the URL the provider finally redirects to (the RP's
        callback), without following it."""
        with httpx.Client(timeout=10) as browser:
            response = browser.get(authorize_url)
            for _ in range(10):
                if response.status_code not in (302, 303):
                    raise AssertionError(
                        f"the provider answered {response.status_code}: {response.text[:500]}"
                    )
                location = str(response.url.join(response.headers["location"]))
                if not location.startswith(self.issuer):
                    return location
                if "/interaction/" in location:
                    location = str(
                        httpx.URL(location).copy_merge_params(
                            {"account": account, "acr": acr, "amr": ",".join(amr)}
                        )
                    )
                response = browser.get(location)
        raise AssertionError("the provider kept redirecting to itself")
