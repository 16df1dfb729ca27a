"""`make run`: the embedded gateway in demo mode, with a local Dovecot and sample MSSanté mail.

Everything lives under `var/`: the SQLite database, the demo Dovecot's mail and its
throwaway CA, and the demo credentials (generated once, file mode 0600). Each start prints
how to sign in. Not for production: a real deployment points at its MSSanté operator.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from backend.accounts import totp, users
from backend.config import load_settings
from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import Mailbox
from devtools import psc_demo, samples
from devtools.dovecot import DovecotServer
from devtools.oidc_provider import ProviderUnavailable

DOMAIN = "chu-demo.mssante.fr"
DEMO_USER = "demo"
DEMO_MAILBOXES = (
    # address, kind, display name, role of the demo user
    (f"dr.martin@{DOMAIN}", "PER", "Dr Camille Martin", "owner"),
    (f"secretariat.cardiologie@{DOMAIN}", "ORG", "Secrétariat de cardiologie", "delegate"),
    (f"dpi@{DOMAIN}", "APP", "Dossier patient informatisé", "delegate"),
)


def _credentials(var_dir: Path) -> dict[str, object]:
    """Generated on first run and kept, so the demo user's authenticator keeps working."""
    path = var_dir / "demo-credentials.json"
    if path.is_file():
        return json.loads(path.read_text())
    creds = {
        "password": secrets.token_urlsafe(12),
        "totp_secret": totp.new_secret(),
        "imap": {address: secrets.token_urlsafe(12) for address, *_ in DEMO_MAILBOXES},
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    return creds


def _seed_mail(dovecot: DovecotServer, creds: dict, marker: Path) -> None:
    if marker.exists():
        return
    personal, secretariat, _app = (address for address, *_ in DEMO_MAILBOXES)
    for raw in samples.demo_mailbox_contents(to=personal):
        dovecot.deliver(personal, raw)
    dovecot.deliver(secretariat, samples.plain_letter(to=secretariat))
    dovecot.deliver(secretariat, samples.xdm_discharge_letter(to=secretariat))
    marker.touch()


def _register(app, dovecot: DovecotServer, creds: dict) -> None:
    """Create the demo user and mailboxes, or point them at this run's Dovecot ports."""
    services = app.extensions["estafette"]
    with session_scope(services.sessions) as db:
        user = users.find_user(db=db, username=DEMO_USER)
        if user is None:
            user = users.create_user(db=db, username=DEMO_USER, password=creds["password"])
            user.totp_secret, user.totp_active = creds["totp_secret"], True
        if user.cps_id is None:  # pre-linked to the demo e-CPS user, as an admin would
            user.cps_id = psc_demo.DEMO_RPPS
        for address, kind, name, role in DEMO_MAILBOXES:
            mailbox = registry.find_mailbox(db=db, address=address)
            secret = creds["imap"][address]
            submission = _submission(dovecot, address, secret)
            if mailbox is None:
                mailbox = registry.create_mailbox(
                    db=db,
                    address=address,
                    kind=kind,
                    display_name=name,
                    imap=registry.ServerSettings(
                        dovecot.host, dovecot.imaps_port, "tls", "password", address, secret
                    ),
                    smtp=submission,
                )
                registry.grant(db=db, mailbox=mailbox, user=user, role=role)
            elif _where(mailbox) != (dovecot.host, dovecot.imaps_port, submission.port):
                _move(mailbox, dovecot, submission)


def _seed_directory(app, var_dir: Path) -> None:
    """A small generated national directory, so recipient autocomplete answers at once
    (GET /api/v1/directory?q=...); loaded once, like the operator's daily import."""
    from backend.directory import extraction, loading
    from backend.storage.models import DirectoryEntry
    from devtools.directory_extraction import write_extraction

    services = app.extensions["estafette"]
    with services.sessions() as db:
        if db.scalar(select(DirectoryEntry.id).limit(1)) is not None:
            return
    path = write_extraction(var_dir / "demo-directory.txt", 2000)
    tally = extraction.Tally()
    with path.open(encoding="utf-8") as lines:
        loading.replace_directory(services.engine, extraction.read_entries(lines, tally), tally)


def _submission(dovecot: DovecotServer, address: str, secret: str) -> registry.ServerSettings:
    """The demo Dovecot's submission service (STARTTLS): it delivers to the demo mailboxes,
    so a newcomer's first reply, read receipt or forward arrives."""
    if dovecot.submission_port is None:
        sys.exit("make run needs Dovecot's submission service: apt-get install dovecot-submissiond")
    return registry.ServerSettings(
        dovecot.host, dovecot.submission_port, "starttls", "password", address, secret
    )


def _where(mailbox: Mailbox) -> tuple[str | None, int | None, int | None]:
    return mailbox.imap_host, mailbox.imap_port, mailbox.smtp_port


def _move(mailbox: Mailbox, dovecot: DovecotServer, submission: registry.ServerSettings) -> None:
    """This run's Dovecot listens on new ports: the mailbox follows (and gains submission)."""
    mailbox.imap_host, mailbox.imap_port = dovecot.host, dovecot.imaps_port
    mailbox.smtp_host, mailbox.smtp_port = submission.host, submission.port
    mailbox.smtp_security, mailbox.smtp_auth = submission.security, submission.auth
    mailbox.smtp_username, mailbox.smtp_secret = submission.username, submission.secret
    mailbox.settings_version += 1


def _instructions(host: str, port: int, creds: dict, psc: bool) -> str:
    base = f"http://{host}:{port}/api/v1"
    uri = totp.provisioning_uri(creds["totp_secret"], DEMO_USER)
    return f"""
  Estafette demo gateway — {base}
  ─────────────────────────────────────────────────────────────────────
  Sign in as   : {DEMO_USER}
  Password     : {creds["password"]}
  TOTP secret  : {creds["totp_secret"]}   (add it to an authenticator app:
                 {uri})
  Current code : .venv/bin/python -m devtools.code

  curl -s -X POST {base}/auth/login -H 'Content-Type: application/json' \\
       -d '{{"username": "{DEMO_USER}", "password": "{creds["password"]}"}}'
  then POST {base}/auth/otp with the mfa_token as Bearer and
       {{"code": "<6 digits>", "device": {{"name": "my phone", "platform": "android"}}}}
  then GET {base}/mailboxes with the access_token.
  Directory  : GET {base}/directory?q=lef   (autocomplete; a small generated directory)
  Send       : POST {base}/mailboxes/<id>/messages with the access_token and
       {{"to": ["secretariat.cardiologie@{DOMAIN}"], "subject": "Avis", "text": "..."}}

  {_psc_instructions(base) if psc else "Sign in with PSC (demo): unavailable (no Node.js)"}

  OpenAPI      : {base}/openapi.json     Health: http://{host}:{port}/readyz
  Demo mail    : {", ".join(a for a, *_ in DEMO_MAILBOXES)}
  Stop with Ctrl-C. Data lives in var/ (delete it to start afresh).
"""


def _psc_instructions(base: str) -> str:
    return f"""Sign in with PSC (demo): a local provider stands for Pro Santé Connect, with a
  demo e-CPS user ({psc_demo.DEMO_RPPS}) pre-linked to `{DEMO_USER}`:
       .venv/bin/python -m devtools.psc_demo   (plays the app: browser, code, exchange)
  or in a browser: {base}/auth/oidc/psc/start?redirect_uri={psc_demo.DEMO_REDIRECT}
       &code_challenge=<BASE64URL(SHA-256(verifier))>&code_challenge_method=S256
  then POST {base}/auth/oidc/exchange {{"code", "code_verifier", "device"}}."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    # The demo has no operator to name: a placeholder NIL keeps the warning for real setups.
    # Its servers are its own Dovecot, trusted through the demo CA (with its CRL) below.
    demo = {"ESTAFETTE_CA_BUNDLE": "system"}
    if not os.environ.get("ESTAFETTE_NIL"):
        demo["ESTAFETTE_NIL"] = "DEMO"
    settings = load_settings(demo)
    creds = _credentials(settings.var_dir)
    provider = None
    try:
        provider, oidc = psc_demo.start_provider(settings.var_dir, args.host, args.port)
        settings = load_settings({**demo, **oidc})
    except ProviderUnavailable as exc:
        print(f"sign in with PSC (demo) is off: {exc}", file=sys.stderr)
    dovecot = DovecotServer(settings.var_dir / "demo-dovecot")
    for address, *_ in DEMO_MAILBOXES:
        dovecot.add_user(address, creds["imap"][address])
    dovecot.start()
    parent = os.getpid()
    try:
        _seed_mail(dovecot, creds, settings.var_dir / "demo-dovecot" / ".seeded")
        from mobile_api import create_app
        from mobile_api.serve import serve

        app = create_app({"SETTINGS": replace(settings, ca_bundle=dovecot.ca_cert_path)})
        _register(app, dovecot, creds)
        _seed_directory(app, settings.var_dir)
        print(_instructions(args.host, args.port, creds, provider is not None), flush=True)
        serve(app, host=args.host, port=args.port, threads=8)
    finally:
        # gunicorn's forked worker unwinds through here too; only the parent owns Dovecot.
        if os.getpid() == parent:
            dovecot.stop()
            if provider is not None:
                provider.stop()


if __name__ == "__main__":
    sys.exit(main())
