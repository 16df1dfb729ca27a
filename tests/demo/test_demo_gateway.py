"""`make run` from nothing: the demo gateway signs in, lists its sample mail, and sends.

The same two commands as the Makefile's `run` target, in a fresh var/: the database
upgrade, then `python -m devtools.run`. A newcomer's first reply must arrive: the demo
mailboxes send through the demo Dovecot's submission service, which delivers locally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Authenticator, bearer, body, free_port, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict]]:
    env = {
        **os.environ,
        "ESTAFETTE_VAR_DIR": str(tmp_path / "var"),
        "ESTAFETTE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "ESTAFETTE_CA_BUNDLE": "system",
    }
    env.pop("ESTAFETTE_SECRET_KEY", None)  # as on a fresh machine
    upgrade = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "mobile_api", "db", "upgrade"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    port = free_port()
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.run", "--port", str(port)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15)

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=60, what="the demo gateway to be ready")
        assert "Sign in as" in log_path.read_text()  # it tells the newcomer how
        creds = json.loads((tmp_path / "var" / "demo-credentials.json").read_text())
        yield http, creds
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        http.close()


def test_a_newcomer_signs_in_reads_the_samples_and_a_reply_arrives(demo) -> None:
    http, creds = demo
    session = Authenticator(secret=creds["totp_secret"]).sign_in(
        http, "demo", password=creds["password"]
    )
    auth = bearer(session["access_token"])
    mailboxes = wait_until(
        lambda: (
            (found := body(http.get("/api/v1/mailboxes", headers=auth)))
            and all(m["sync"]["state"] == "ok" for m in found)
            and found
        ),
        timeout=60,
        what="the demo mailboxes in sync",
    )
    by_address = {m["address"]: m for m in mailboxes}
    personal = by_address["dr.martin@chu-demo.mssante.fr"]
    secretariat = by_address["secretariat.cardiologie@chu-demo.mssante.fr"]
    samples = body(http.get(f"/api/v1/mailboxes/{personal['id']}/messages", headers=auth))
    assert samples["items"], "the demo mailbox holds sample mail"

    sent = http.post(
        f"/api/v1/mailboxes/{personal['id']}/messages",
        headers=auth,
        json={
            "to": [secretariat["address"]],
            "subject": "Re: demande d'avis",
            "text": "Vu, je passe cet après-midi.",
            "in_reply_to": samples["items"][0]["id"],
        },
    )
    assert sent.status_code == 202, body(sent)
    assert body(sent)["sent_copy"] is True

    wait_until(
        lambda: (
            "Re: demande d'avis"
            in [
                m["subject"]
                for m in body(
                    http.get(f"/api/v1/mailboxes/{secretariat['id']}/messages", headers=auth)
                )["items"]
            ]
        ),
        timeout=30,
        what="the reply delivered to the secretariat's mailbox",
    )


def test_the_demo_directory_answers_autocomplete_at_once(demo) -> None:
    http, creds = demo
    session = Authenticator(secret=creds["totp_secret"]).sign_in(
        http, "demo", password=creds["password"]
    )
    auth = bearer(session["access_token"])

    hits = body(http.get("/api/v1/directory", params={"q": "hélène lef"}, headers=auth))["items"]

    assert "helene.lefevre@chu-test.mssante.fr" in [h["address"] for h in hits]


def test_a_newcomer_signs_in_with_psc_demo_as_the_demo_e_cps_user(demo) -> None:
    from devtools import psc_demo

    http, _creds = demo

    session = psc_demo.sign_in(str(http.base_url).rstrip("/"))

    mailboxes = http.get("/api/v1/mailboxes", headers=bearer(session["access_token"]))
    assert mailboxes.status_code == 200, body(mailboxes)
    assert len(body(mailboxes)) == 3  # the demo user's: the e-CPS user is pre-linked to it
