"""Schemathesis over the served OpenAPI document: the message calls, signed in, never a 5xx.

The fuzzed gateway runs on SQLite and on PostgreSQL (which refuses what SQLite stores, NUL
characters for one) against the real test Dovecot, with a mailbox holding real mail:
generated ids are sometimes swapped for real ones, so the calls also reach their success
paths. Any route added under
/mailboxes, /messages, /sync, /drafts, /me, /devices or /auth/oidc is fuzzed without touching
this file.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from devtools.webpush_server import write_vapid_key
from tests.api.fuzzing import EXCLUDED_CHECKS, FuzzedApp, fuzz_settings, served_schema
from tests.conftest import TEST_DATA_KEY, TEST_SECRET_KEY, _reset_postgres
from tests.messages.support import Inbox

MESSAGE_CALLS = r"^/api/v1/(mailboxes|messages|sync|drafts|me/|devices|directory|auth/oidc/)"
MAX_EXAMPLES = 40


def _mail(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Dr Test <test@ch-exemple.mssante.fr>"
    message["To"] = "x@chu-test.mssante.fr"
    message["Subject"] = subject
    message.set_content("Corps du message.")
    message.add_attachment(
        b"%PDF-1.4 fuzz", maintype="application", subtype="pdf", filename="a.pdf"
    )
    return bytes(message)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed_app(request, tmp_path_factory, dovecot) -> Iterator[Any]:
    from mobile_api import create_app

    home = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), home / "estafette.db")
        url = f"sqlite:///{home / 'estafette.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        _reset_postgres(url)
    app = create_app(
        {
            "ESTAFETTE_DATABASE_URL": url,
            "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
            "ESTAFETTE_DATA_KEY": TEST_DATA_KEY,
            "ESTAFETTE_VAR_DIR": str(home / "var"),
            "ESTAFETTE_NIL": "test-nil",
            "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
            "ESTAFETTE_VAPID_PRIVATE_KEY": str(write_vapid_key(home / "vapid.pem")),
            "ESTAFETTE_VAPID_SUBJECT": "mailto:dsi@chu-test.mssante.fr",
            "TESTING": True,
        }
    )
    yield app
    app.extensions["estafette"].engine.dispose()


@pytest.fixture(scope="module")
def signed_in(fuzzed_app, dovecot) -> Inbox:
    """A doctor signed in on a Dovecot mailbox with a few real messages in the cache."""
    inbox = Inbox.create(fuzzed_app.test_client(), fuzzed_app.extensions["estafette"], dovecot)
    inbox.real_ids = [inbox.deliver(_mail(f"fuzz {i}")) for i in range(3)]
    return inbox


FUZZED = FuzzedApp()
# Loaded at collection (schemathesis' lazy fixture loader does not run on pytest 9).
schema = served_schema(MESSAGE_CALLS, FUZZED)


def _aim_at_real_objects(case: Any, inbox: Inbox) -> None:
    """Half the generated ids become real ones, chosen by the generated value itself."""
    parameters = case.path_parameters or {}
    for name, real in (("mailbox_id", [inbox.mailbox_id]), ("message_id", inbox.real_ids)):
        if name in parameters:
            pick = zlib.crc32(str(parameters[name]).encode())
            if pick % 2 == 0:
                parameters[name] = real[pick % len(real)]


@schema.parametrize()
@fuzz_settings(MAX_EXAMPLES)
def test_the_message_calls_never_answer_a_server_error(case, fuzzed_app, signed_in) -> None:
    _aim_at_real_objects(case, signed_in)
    FUZZED.target = fuzzed_app
    case.call_and_validate(
        headers=signed_in.headers,
        excluded_checks=EXCLUDED_CHECKS,
    )
