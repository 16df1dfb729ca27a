"""Helpers the specifications share: waiting on a condition, and signing in like an app."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyotp

T = TypeVar("T")

DEFAULT_PASSWORD = "correct horse battery staple"


def free_port() -> int:
    """A loopback TCP port nobody listens on now, for a process a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def body(response: Any) -> Any:
    """JSON of a Flask test response or an httpx response."""
    return response.json() if callable(response.json) else response.json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Authenticator:
    """Plays the app's sign-in: password, TOTP enrolment on first use, then a code."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.recovery_codes: list[str] = []
        self._step_offset = 0

    def next_code(self) -> str:
        """A code the server has not seen: the current step, then the next one (drift ≤ 1),
        then recovery codes, so a test needs no 30-second wait between sign-ins."""
        if self._step_offset > 1 and self.recovery_codes:
            return self.recovery_codes.pop()
        code = pyotp.TOTP(self.secret).at(time.time() + 30 * self._step_offset)
        self._step_offset += 1
        return code

    def sign_in(
        self,
        http: Any,
        username: str,
        password: str = DEFAULT_PASSWORD,
        device: dict | None = None,
        prefix: str = "/api/v1",
    ) -> dict:
        login = http.post(f"{prefix}/auth/login", json={"username": username, "password": password})
        assert login.status_code == 200, body(login)
        mfa = body(login)
        headers = bearer(mfa["mfa_token"])
        if mfa["enrollment_required"]:
            enrolled = http.post(f"{prefix}/auth/otp/enroll", headers=headers)
            assert enrolled.status_code == 200, body(enrolled)
            self.secret = body(enrolled)["secret"]
            self._step_offset = 0
            activated = http.post(
                f"{prefix}/auth/otp/activate", headers=headers, json={"code": self.next_code()}
            )
            assert activated.status_code == 200, body(activated)
            self.recovery_codes = body(activated)["recovery_codes"]
        device = device or {"name": "Pixel de garde", "platform": "android"}
        session = http.post(
            f"{prefix}/auth/otp", headers=headers, json={"code": self.next_code(), "device": device}
        )
        assert session.status_code == 200, body(session)
        return body(session)


def cli_create_org_mailbox(runner: Any, address: str, host: str = "imap.example") -> Any:
    """`flask mailboxes create` for an ORG mailbox with a password on stdin, as an operator
    types it; the click result."""
    return runner.invoke(
        args=["mailboxes", "create", address, "--kind", "ORG", "--imap-host", host,
              "--imap-port", "993", "--security", "tls", "--auth", "password",
              "--secret-stdin"],
        input="imap-secret\n",
    )  # fmt: skip
