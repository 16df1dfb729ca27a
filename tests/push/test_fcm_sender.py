"""The FCM sender and payloads, with firebase-admin running for real against FakeFcm."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from firebase_admin import messaging

from backend.push import payloads
from backend.push.fcm import (
    FcmSender,
    LogSender,
    _retry_after,
    create_sender,
)
from backend.push.outcomes import Outcome, OutcomeKind
from devtools.fcm_server import FakeFcm
from devtools.pki import make_ca

pytestmark = pytest.mark.unit

MAILBOX = "mbx_7Qe2kLr9"
PROJECT = "estafette-test"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeFcm]:
    with FakeFcm() as server:
        yield server


@pytest.fixture(scope="module")
def service_account(fake: FakeFcm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake.write_service_account(tmp_path_factory.mktemp("fcm") / "sa.json", PROJECT)


@pytest.fixture(scope="module")
def sender(fake: FakeFcm, service_account: Path) -> Iterator[FcmSender]:
    with FcmSender(service_account, fake.base_url) as fcm:
        yield fcm


@pytest.fixture(autouse=True)
def clean_fake(fake: FakeFcm) -> None:
    fake.reset()


def test_new_mail_payload_on_the_wire_is_exactly_api_md(fake: FakeFcm, sender: FcmSender) -> None:
    [outcome] = sender.send([payloads.new_mail("device-token-1", MAILBOX, 3)])

    assert outcome.kind is OutcomeKind.OK
    [request] = fake.requests
    assert request.path == f"/v1/projects/{PROJECT}/messages:send"
    assert request.headers["authorization"].startswith("Bearer ya29.")
    assert request.body == {
        "message": {
            "token": "device-token-1",
            "data": {"v": "1", "type": "mail.new", "mailbox": MAILBOX, "unread": "3"},
            "android": {"priority": "high", "collapse_key": MAILBOX, "ttl": "86400s"},
            "apns": {
                "headers": {"apns-priority": "10", "apns-collapse-id": MAILBOX},
                "payload": {
                    "aps": {
                        "alert": {"loc-key": "NEW_SECURE_MESSAGE"},
                        "mutable-content": 1,
                        "thread-id": MAILBOX,
                    }
                },
            },
        }
    }
    assert outcome.message_id.startswith(f"projects/{PROJECT}/messages/")


def test_mail_read_is_a_silent_push_that_updates_the_badge(
    fake: FakeFcm, sender: FcmSender
) -> None:
    [outcome] = sender.send([payloads.mail_read("device-token-1", MAILBOX, 0)])

    assert outcome.kind is OutcomeKind.OK
    assert fake.requests[0].body == {
        "message": {
            "token": "device-token-1",
            "data": {"v": "1", "type": "mail.read", "mailbox": MAILBOX, "unread": "0"},
            "android": {"priority": "normal", "collapse_key": MAILBOX, "ttl": "86400s"},
            "apns": {
                "headers": {
                    "apns-priority": "5",
                    "apns-push-type": "background",
                    "apns-collapse-id": MAILBOX,
                },
                "payload": {"aps": {"content-available": 1, "badge": 0}},
            },
        }
    }


@pytest.mark.parametrize("build", [payloads.new_mail, payloads.mail_read])
def test_payloads_carry_only_opaque_fields_and_no_visible_text(build) -> None:
    encoded = messaging._MessagingService.encode_message(build("tok", MAILBOX, 2))

    assert set(encoded["data"]) == {"v", "type", "mailbox", "unread"}
    assert "notification" not in encoded
    assert "notification" not in encoded["android"]
    alert = encoded["apns"]["payload"]["aps"].get("alert", {})
    assert set(alert) <= {"loc-key"}


def test_payloads_refuse_a_mailbox_id_apns_cannot_use_as_collapse_id() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        payloads.new_mail("tok", "m" * 65, 1)
    with pytest.raises(ValueError, match="negative"):
        payloads.mail_read("tok", MAILBOX, -1)


def test_batch_of_1200_is_sent_in_calls_of_at_most_500_and_all_arrive(
    fake: FakeFcm, sender: FcmSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_send_each_async = messaging.send_each_async

    async def counting_send_each_async(messages, dry_run=False, app=None):
        calls.append(len(messages))
        return await real_send_each_async(messages, dry_run=dry_run, app=app)

    monkeypatch.setattr(messaging, "send_each_async", counting_send_each_async)
    tokens = [f"device-{i}" for i in range(1200)]

    outcomes = sender.send([payloads.new_mail(t, MAILBOX, 1) for t in tokens])

    assert calls == [500, 500, 200]
    assert outcomes == [Outcome.ok(o.message_id) for o in outcomes]
    assert {r.token for r in fake.wait_for_count(1200, timeout=10)} == set(tokens)


@pytest.mark.parametrize(
    ("kind", "retry_after", "expected"),
    [
        ("unregistered", None, Outcome.prune("UNREGISTERED")),
        ("invalid_token", None, Outcome.prune("INVALID_ARGUMENT")),
        ("invalid_payload", None, Outcome.failed("INVALID_ARGUMENT")),
        ("quota", 7, Outcome.retry("QUOTA_EXCEEDED", 7.0)),
        ("unavailable", None, Outcome.retry("UNAVAILABLE")),
        ("unavailable", 30, Outcome.retry("UNAVAILABLE", 30.0)),
        ("internal", None, Outcome.retry("INTERNAL")),
        ("sender_id_mismatch", None, Outcome.failed("SENDER_ID_MISMATCH")),
        ("third_party_auth", None, Outcome.failed("THIRD_PARTY_AUTH_ERROR")),
    ],
)
def test_each_fcm_error_maps_to_what_the_dispatcher_should_do(
    fake: FakeFcm, sender: FcmSender, kind: str, retry_after: int | None, expected: Outcome
) -> None:
    fake.fail("doomed-token", kind, retry_after=retry_after)

    assert sender.send([payloads.new_mail("doomed-token", MAILBOX, 1)]) == [expected]
    # One attempt: retries belong to the dispatcher, not to firebase-admin.
    assert len(fake.requests) == 1


def test_a_failure_affects_only_its_own_device(fake: FakeFcm, sender: FcmSender) -> None:
    fake.fail("dead", "unregistered")

    outcomes = sender.send([payloads.new_mail(t, MAILBOX, 1) for t in ("a", "dead", "b")])

    assert [o.kind for o in outcomes] == [OutcomeKind.OK, OutcomeKind.PRUNE, OutcomeKind.OK]


def test_a_transient_failure_heals_on_the_dispatchers_next_attempt(
    fake: FakeFcm, sender: FcmSender
) -> None:
    fake.fail("flaky", "unavailable", times=1)
    message = payloads.new_mail("flaky", MAILBOX, 1)

    assert sender.send([message])[0].kind is OutcomeKind.RETRY
    assert sender.send([message])[0].kind is OutcomeKind.OK
    assert [r.status for r in fake.requests] == [503, 200]


def test_an_unreachable_fcm_is_a_retry_for_every_message(service_account: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening
        with FcmSender(service_account, nobody) as fcm:
            outcomes = fcm.send([payloads.new_mail(t, MAILBOX, 1) for t in ("a", "b")])

    assert [o.kind for o in outcomes] == [OutcomeKind.RETRY, OutcomeKind.RETRY]


def test_an_fcm_that_never_answers_is_a_retry_after_the_timeout(service_account: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with FcmSender(service_account, silent_url, timeout=0.5) as fcm:
            [outcome] = fcm.send([payloads.new_mail("a", MAILBOX, 1)])

    assert outcome.kind is OutcomeKind.RETRY


def test_a_message_firebase_admin_refuses_to_encode_fails_alone(sender: FcmSender) -> None:
    bad = messaging.Message(fid="x", data={"unread": 3})  # FCM data values are strings

    outcomes = sender.send(
        [payloads.new_mail("a", MAILBOX, 1), bad, payloads.new_mail("b", MAILBOX, 1)]
    )

    assert [o.kind for o in outcomes] == [OutcomeKind.OK, OutcomeKind.FAILED, OutcomeKind.OK]
    assert outcomes[1].code == "INVALID_MESSAGE"


def test_third_party_auth_error_does_not_refresh_the_access_token(
    fake: FakeFcm, sender: FcmSender
) -> None:
    sender.send([payloads.new_mail("warm-up", MAILBOX, 1)])
    fake.reset()
    fake.fail("ios-device", "third_party_auth")

    sender.send([payloads.new_mail("ios-device", MAILBOX, 1)])

    assert fake.token_requests == 0
    assert len(fake.requests) == 1


def test_a_revoked_access_token_is_refreshed_and_the_push_delivered(
    fake: FakeFcm, sender: FcmSender
) -> None:
    sender.send([payloads.new_mail("warm-up", MAILBOX, 1)])
    fake.reset()
    fake.revoke_access_tokens()

    [outcome] = sender.send([payloads.new_mail("device", MAILBOX, 1)])

    assert outcome.kind is OutcomeKind.OK
    assert fake.token_requests == 1
    assert [r.status for r in fake.requests] == [401, 200]


def test_connections_are_reused_from_one_send_to_the_next(
    fake: FakeFcm, service_account: Path
) -> None:
    with FcmSender(service_account, fake.base_url, max_in_flight=8) as fcm:
        fcm.send([payloads.new_mail(f"d{i}", MAILBOX, 1) for i in range(100)])
        opened = fake.connections
        fcm.send([payloads.new_mail(f"d{i}", MAILBOX, 1) for i in range(100)])

    # One connection per request in flight, plus the token endpoint's. Over HTTP/1.1 reqwest
    # puts a connection back in its pool a moment after its answer is read, and a request
    # that starts in that moment opens another: CI once saw one extra. 200 requests still
    # share a handful of connections. Over HTTP/2, as with Google, all share one (see
    # test_pushes_share_one_http2_connection_when_the_server_offers_it).
    assert opened <= 8 + 1 + 2
    assert fake.connections - opened <= 2  # the second send reuses them


def test_no_token_reaches_any_log_line(
    fake: FakeFcm, sender: FcmSender, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail("secret-token-dead", "unregistered")
    fake.fail("secret-token-mismatch", "sender_id_mismatch")
    caplog.set_level(logging.DEBUG)  # every logger: ours, firebase_admin, httpx, httpcore

    sender.send(
        [
            payloads.new_mail("secret-token-ok", MAILBOX, 1),
            payloads.new_mail("secret-token-dead", MAILBOX, 1),
            payloads.new_mail("secret-token-mismatch", MAILBOX, 1),
        ]
    )

    assert "failed:SENDER_ID_MISMATCH=1" in caplog.text
    assert "secret-token" not in caplog.text
    assert "NEW_SECURE_MESSAGE" not in caplog.text


def test_log_sender_logs_type_mailbox_and_count_but_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="estafette.push")

    outcomes = LogSender().send(
        [
            payloads.new_mail("secret-token-1", MAILBOX, 4),
            payloads.mail_read("secret-token-2", MAILBOX, 0),
        ]
    )

    assert outcomes == [Outcome.ok(), Outcome.ok()]
    lines = [r.getMessage() for r in caplog.records if r.name == "estafette.push"]
    assert lines == [
        f"push (log only) type=mail.new mailbox={MAILBOX} unread=4",
        f"push (log only) type=mail.read mailbox={MAILBOX} unread=0",
    ]
    assert "secret-token" not in caplog.text


def test_no_credentials_means_pushes_are_only_logged() -> None:
    assert isinstance(create_sender(None), LogSender)


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)

    assert _retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert 55 < _retry_after(httpx.Response(503, headers={"Retry-After": in_a_minute})) <= 60
    assert _retry_after(httpx.Response(503)) is None
    assert _retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None


@pytest.fixture
def fake_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFcm]:
    """FakeFcm on https, offering HTTP/2 by ALPN as Google does, under a throwaway CA."""
    ca = make_ca("Estafette Test FCM CA")
    cert, key = ca.issue_server_cert().write_pem(tmp_path / "fcm.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    bundle = ca.write_cert(tmp_path / "ca.pem")
    # The standard variables, as an operator behind a TLS-inspecting proxy would set them:
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # reqwest (rustls) for FCM
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))  # google-auth for the token
    with FakeFcm(tls=context) as server:
        yield server


def test_pushes_share_one_http2_connection_when_the_server_offers_it(
    fake_over_tls: FakeFcm, tmp_path: Path
) -> None:
    account = fake_over_tls.write_service_account(tmp_path / "sa.json", PROJECT)
    fake_over_tls.fail("dead", "unregistered")
    fake_over_tls.fail("busy", "quota", retry_after=30)
    tokens = [*(f"device-{i}" for i in range(40)), "dead", "busy"]

    with FcmSender(account, fake_over_tls.base_url) as fcm:
        outcomes = fcm.send([payloads.new_mail(token, MAILBOX, 1) for token in tokens])

    assert all(outcome.kind is OutcomeKind.OK for outcome in outcomes[:40])
    assert outcomes[40] == Outcome.prune("UNREGISTERED")
    assert outcomes[41].kind is OutcomeKind.RETRY
    assert outcomes[41].retry_after == 30
    assert {r.http_version for r in fake_over_tls.requests} == {"2"}
    assert fake_over_tls.connections == 2  # one for every push, one for the OAuth2 token


def test_pushes_and_the_token_go_through_the_outbound_proxy(
    fake: FakeFcm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FakeFcm also answers as a forward proxy. Neither FCM's nor the token endpoint's name
    # resolves here, so an answer can only have come through the proxy.
    account = fake.write_service_account(tmp_path / "sa.json", PROJECT)
    info = json.loads(account.read_text())
    account.write_text(json.dumps({**info, "token_uri": "http://oauth.example.invalid/token"}))
    monkeypatch.setenv("HTTP_PROXY", fake.base_url)
    monkeypatch.setenv("NO_PROXY", "")

    with FcmSender(account, "http://fcm.example.invalid") as fcm:
        outcomes = fcm.send([payloads.new_mail(f"d{i}", MAILBOX, 1) for i in range(3)])

    assert [outcome.kind for outcome in outcomes] == [OutcomeKind.OK] * 3
    assert fake.token_requests == 1
    assert len(fake.requests) == 3
