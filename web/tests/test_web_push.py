"""Web Push in the browser, end to end: a message delivered to Dovecot, the gateway's own
sync worker and push dispatcher (`flask serve`), a push service, and the web client's
service worker in Chromium, which shows the notice and opens the mailbox on a tap.

Which link is real and which is a stand-in:

- Real: Dovecot; the gateway (sync, outbox, dispatcher, VAPID signature and RFC 8291
  `aes128gcm` encryption by pywebpush); the web client's own subscription code (it asks
  the gateway for the VAPID key, calls `pushManager.subscribe()` with it and hands the
  subscription over with `PUT /devices/{id}/web-push`); its preview key, made at sign-in
  and kept as a non-extractable WebCrypto key in IndexedDB; the service worker, which
  decrypts the preview and shows the notification; Chromium's notification store.
- Stand-in: the browser vendor's push service, and the browser's half of the
  subscription. Chromium cannot subscribe here: in a Playwright context (off the record)
  `pushManager.subscribe()` fails at once with "AbortError: Registration failed -
  permission denied"; in a persistent profile it waits on Google's FCM registration,
  which needs the internet, and never settles. So an init script answers the page's
  `subscribe()` with a subscription of devtools/webpush_server.py (an endpoint on
  loopback, a P-256 key and an auth secret whose private halves it keeps). That service
  checks the VAPID signature and decrypts as Chromium would; its plaintext is handed to
  the service worker over the DevTools protocol (`ServiceWorker.deliverPushMessage`), as
  Chromium hands a decrypted push to it.
- The tap: headless Chromium draws no notification to click, so the test dispatches a
  `notificationclick` in the worker for the notification it really shows.

The content-free test's gateway runs on SQLite, the previews test's on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from client import (
    Clinician,
    deliver_push,
    service_worker,
    shown_notifications,
    tap_notification,
)
from harness import COLLEAGUE, PASSWORD, Gateway, on_database, running_gateway
from playwright.sync_api import Browser, BrowserContext, Page, expect

from devtools.webpush_server import Browser as Subscription
from devtools.webpush_server import Received, WebPushService, write_vapid_key
from tests.support import wait_until

CANARY = "CANARI"
SENDER = f"Dr Berthe {CANARY}"
SUBJECT = f"Résultats IRM — patient {CANARY}"

# The stand-in for Chromium's subscription (see the module docstring): the page's own
# push code runs as written; only the vendor's answer to subscribe() is replaced.
STAND_IN_SUBSCRIPTION = """(() => {
  const subscription = %s;
  let subscribed = false;
  const base64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const given = {
    endpoint: subscription.endpoint,
    expirationTime: null,
    toJSON: () => subscription,
    unsubscribe: async () => { subscribed = false; return true; },
  };
  PushManager.prototype.subscribe = async function (options) {
    window.applicationServerKey = base64url(options.applicationServerKey);
    subscribed = true;
    return given;
  };
  PushManager.prototype.getSubscription = async function () {
    return subscribed ? given : null;
  };
})();"""


def _letter(to: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"{SENDER} <{COLLEAGUE}>"
    message["To"] = to
    message["Subject"] = SUBJECT
    message["X-MSS-NIL"] = "test"
    message.set_content(f"Compte rendu de l'IRM de M. {CANARY}.")
    return bytes(message)


@pytest.fixture(scope="module")
def push_service() -> Iterator[WebPushService]:
    with WebPushService() as service:
        yield service


def _gateway(
    root, push_service: WebPushService, previews: bool, database: str
) -> Iterator[Gateway]:
    with on_database(database) as on:
        settings = {
            **on,
            "ESTAFETTE_VAPID_PRIVATE_KEY": str(write_vapid_key(root / "vapid.pem")),
            "ESTAFETTE_VAPID_SUBJECT": "mailto:dsi@chu-test.mssante.fr",
            "ESTAFETTE_WEB_PUSH_ORIGINS": push_service.origin,
            "ESTAFETTE_PUSH_PREVIEWS": "on" if previews else "off",
        }
        with running_gateway(root, ["push"], settings=settings) as gateway:
            yield gateway


# One on each database the gateway supports: the outbox and the dispatcher's leases are
# where the two differ most, at no extra cost in gateways started.
@pytest.fixture(scope="module", params=["sqlite"])
def content_free_gateway(request, tmp_path_factory, push_service) -> Iterator[Gateway]:
    """A gateway as shipped: previews off."""
    root = tmp_path_factory.mktemp("web-push")
    yield from _gateway(root, push_service, previews=False, database=request.param)


@pytest.fixture(scope="module", params=["postgresql"])
def previews_gateway(request, tmp_path_factory, push_service) -> Iterator[Gateway]:
    """An establishment that turned encrypted previews on (ESTAFETTE_PUSH_PREVIEWS=on)."""
    root = tmp_path_factory.mktemp("web-push-previews")
    yield from _gateway(root, push_service, previews=True, database=request.param)


class Rung:
    """A clinician signed in with push on, away from her mailbox when a mail arrives."""

    def __init__(self, browser: Browser, gateway: Gateway, service: WebPushService, axe: str):
        self.gateway, self.service = gateway, service
        self.subscription: Subscription = service.subscribe()
        self.context: BrowserContext = browser.new_context(
            locale="fr-FR", permissions=["notifications"]
        )
        self.context.add_init_script(
            script=STAND_IN_SUBSCRIPTION % json.dumps(self.subscription.subscription())
        )
        self.page: Page = self.context.new_page()
        self.page.goto(gateway.base_url + "/")
        self.address = gateway.clinicians["push"].address
        clinician = Clinician(self.page, gateway, gateway.clinicians["push"].username, axe, "push")
        with self.page.expect_response(
            lambda r: r.url.endswith("/web-push") and r.request.method == "PUT", timeout=60_000
        ) as registered:
            clinician.enrol_and_sign_in(PASSWORD)
        assert registered.value.status == 200  # the app handed its subscription over
        mailbox = self.page.locator("#pane-mailboxes a.mailbox", has_text=self.address)
        self.mailbox_id = mailbox.get_attribute("href").removeprefix("#/m/")
        clinician.go("#/settings")  # elsewhere in the app: the tap must bring her back
        expect(self.page.get_by_label("Activer les heures calmes")).to_be_visible()

    def mail_arrives(self) -> Received:
        """A letter delivered to Dovecot; what the push service received and decrypted."""
        self.gateway.deliver(self.address, _letter(self.address))
        return wait_until(
            lambda: [
                p
                for p in self.service.received_by(self.subscription)
                if p.payload.get("type") == "mail.new"
            ],
            timeout=90,
            what="the gateway's Web Push at the push service",
        )[-1]

    def ring(self, push: Received) -> list[dict]:
        """The push reaches the service worker; the notifications it then shows."""
        deliver_push(self.page, self.gateway.base_url, push.plaintext)
        return wait_until(
            lambda: shown_notifications(service_worker(self.context)),
            timeout=15,
            what="the service worker's notification",
        )

    def tap_opens_the_mailbox(self) -> None:
        tap_notification(service_worker(self.context))
        expect(self.page).to_have_url(re.compile(f"#/m/{re.escape(self.mailbox_id)}$"))
        rows = self.page.locator("#pane-list a.row")
        expect(rows.filter(has_text=SUBJECT)).to_be_visible(timeout=30_000)
        assert shown_notifications(service_worker(self.context)) == []  # closed by the tap


@pytest.fixture
def sign_in(browser, push_service, axe_script) -> Iterator[Callable[[Gateway], Rung]]:
    """Signs the gateway's clinician in, in a browser context of her own (closed after)."""
    signed_in: list[Rung] = []

    def sign_in_at(gateway: Gateway) -> Rung:
        signed_in.append(Rung(browser, gateway, push_service, axe_script))
        return signed_in[-1]

    yield sign_in_at
    for rung in signed_in:
        rung.context.close()


def test_a_mail_in_dovecot_rings_the_browser_with_a_content_free_notice_a_tap_opens(
    content_free_gateway: Gateway, sign_in: Callable[[Gateway], Rung]
) -> None:
    rung = sign_in(content_free_gateway)
    push = rung.mail_arrives()

    # What crossed the push service: the opaque mailbox id and a count, nothing of the mail.
    assert push.payload["mailbox"] == rung.mailbox_id
    assert set(push.payload) <= {"v", "type", "mailbox", "unread", "urgent"}
    assert CANARY not in push.plaintext + repr(push.headers) + repr(push.claims)
    # Signed with the very key the page subscribed with (GET /devices/{id}/web-push).
    assert rung.page.evaluate("applicationServerKey") == push.vapid_key

    notices = rung.ring(push)

    assert notices == [
        {"title": "Nouveau message sécurisé", "body": "", "data": {"mailbox": rung.mailbox_id}}
    ]
    assert CANARY not in json.dumps(notices)
    rung.tap_opens_the_mailbox()


def test_with_previews_on_the_service_worker_decrypts_sender_and_subject_with_its_own_key(
    previews_gateway: Gateway, sign_in: Callable[[Gateway], Rung]
) -> None:
    rung = sign_in(previews_gateway)
    push = rung.mail_arrives()

    # The push service carried ciphertext only, sealed for this browser's key.
    assert {"enc", "kid"} <= set(push.payload)
    assert CANARY not in push.plaintext + repr(push.headers)
    # The device keeps that key where no script can read it back.
    kept = rung.page.evaluate(
        """() => new Promise((resolve, reject) => {
            const open = indexedDB.open('estafette');
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
                const get = open.result.transaction('meta').objectStore('meta').get('push_key');
                get.onsuccess = async () => {
                    const {key, kid} = get.result;
                    const exported = await crypto.subtle.exportKey('raw', key).then(
                        () => 'exported', e => e.name);
                    resolve({kid, extractable: key.extractable, exported, usages: key.usages});
                    open.result.close();
                };
            };
        })"""
    )
    assert kept == {
        "kid": push.payload["kid"],
        "extractable": False,
        "exported": "InvalidAccessError",
        "usages": ["decrypt"],
    }

    notices = rung.ring(push)

    assert notices == [
        {
            "title": "Nouveau message sécurisé",
            "body": f"{SENDER} — {SUBJECT}",
            "data": {"mailbox": rung.mailbox_id},
        }
    ]
    rung.tap_opens_the_mailbox()
