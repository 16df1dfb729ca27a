"""What a clinician does in the web client, as steps the browser tests compose."""

from __future__ import annotations

import ssl
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

import pyotp
from harness import Gateway
from imapclient import IMAPClient
from playwright.sync_api import BrowserContext, Page, Worker, expect

from tests.support import wait_until

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"


class Clinician:
    """A browser page and its authenticator, for one clinician of the gateway."""

    def __init__(self, page: Page, gateway: Gateway, username: str, axe: str, size: str):
        self.page, self.gateway, self.username = page, gateway, username
        self.axe, self.size = axe, size
        self.secret = ""
        self.last_step = -1

    def code(self) -> str:
        """A TOTP code the server takes and has not seen yet: the current step, or the one
        after the last used, once that is within the server's one step of drift."""
        wanted = max(self.last_step + 1, int(time.time() // 30))
        wait_until(
            lambda: int(time.time() // 30) + 1 >= wanted,
            timeout=35,
            interval=0.5,
            what="a TOTP step the server has not seen",
        )
        self.last_step = wanted
        return pyotp.TOTP(self.secret).at(wanted * 30)

    def enrol_and_sign_in(self, password: str) -> None:
        page = self.page
        page.get_by_label("Identifiant").fill(self.username)
        page.get_by_label("Mot de passe").fill(password)
        page.get_by_role("button", name="Continuer").click()
        expect(
            page.get_by_role("heading", name="Activer la double authentification")
        ).to_be_visible()
        expect(page.get_by_role("img")).to_be_visible()  # the API's QR code
        self.secret = page.locator(".secret").text_content().split(":")[-1].strip()
        self.check_screen("enrolment")
        page.get_by_label("Code à 6 chiffres").fill(self.code())
        page.get_by_role("button", name="Continuer").click()
        expect(page.get_by_role("heading", name="Codes de secours")).to_be_visible()
        page.get_by_role("button", name="Continuer").click()
        page.get_by_label("Code à 6 chiffres").fill(self.code())
        page.get_by_role("button", name="Connexion").click()

    def go(self, hash_: str) -> None:
        """Follow an in-app link (the phone shows one pane, so not every link is on screen)."""
        self.page.evaluate("h => { location.hash = h }", hash_)

    def check_screen(self, name: str) -> None:
        """Screenshot, no horizontal overflow, no serious or critical axe-core violation."""
        page = self.page
        page.wait_for_load_state()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{self.size}-{name}.png"))
        overflow = page.evaluate(
            """() => {
                const doc = document.documentElement;
                const wide = [doc, document.body, ...document.querySelectorAll('.pane, .card')]
                  .filter(e => e.offsetParent !== null || e === doc || e === document.body)
                  .filter(e => e.scrollWidth > e.clientWidth + 1)
                  .map(e => `${e.tagName}#${e.id}: ${e.scrollWidth}>${e.clientWidth}`);
                if (doc.scrollWidth > window.innerWidth) wide.push(`page ${doc.scrollWidth}`);
                return wide;
            }"""
        )
        assert overflow == [], f"{self.size} {name}: overflows horizontally: {overflow}"
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                    'button, a.button, a.row, a.mailbox, input:not([type=checkbox]), select')]
                .filter(e => e.offsetParent !== null)
                .map(e => [e, e.getBoundingClientRect()])
                .filter(([e, box]) => box.height < 44 || box.width < 44)
                .map(([e, box]) => `${e.tagName} "${e.textContent.trim().slice(0, 30)}" `
                                   + `${Math.round(box.width)}x${Math.round(box.height)}`)"""
        )
        assert small == [], f"{self.size} {name}: touch targets under 44 px: {small}"
        # The app's CSP allows no inline script, so axe-core (from web/node_modules) comes in
        # as a same-origin file the browser fetches: the policy stays on while it is checked.
        axe_url = f"{self.gateway.base_url}/__tests__/axe.min.js"
        page.route(axe_url, lambda route: route.fulfill(path=self.axe))
        page.add_script_tag(url=axe_url)
        violations = page.evaluate(
            """async () => {
                const options = {iframes: false, resultTypes: ['violations']};
                const result = await axe.run(document, options);
                return result.violations
                  .filter(v => v.impact === 'serious' || v.impact === 'critical')
                  .map(v => `${v.id} (${v.impact}): ${v.nodes.map(n => n.target).join(', ')}`);
            }"""
        )
        assert violations == [], f"{self.size} {name}: axe-core: {violations}"

    def stored(self) -> dict:
        """What the device keeps: IndexedDB databases and Cache Storage keys."""
        return self.page.evaluate(
            """async () => ({
                databases: (await indexedDB.databases()).map(d => d.name),
                caches: await caches.keys(),
            })"""
        )

    def stored_bodies(self) -> int:
        return self.page.evaluate(
            """() => new Promise((resolve, reject) => {
                const open = indexedDB.open('estafette');
                open.onsuccess = () => {
                    const db = open.result;
                    const count = db.transaction('bodies').objectStore('bodies').count();
                    count.onsuccess = () => { resolve(count.result); db.close(); };
                    count.onerror = () => reject(count.error);
                };
                open.onerror = () => reject(open.error);
            })"""
        )


def imap(gateway: Gateway, address: str) -> IMAPClient:
    """A second IMAP client, as a desktop mail program would be (TLS, the test CA)."""
    context = ssl.create_default_context(cafile=str(gateway.dovecot.ca_cert_path))
    client = IMAPClient(
        gateway.dovecot.host, port=gateway.dovecot.imaps_port, ssl=True, ssl_context=context
    )
    client.login(address, gateway.imap_passwords[address])
    return client


def _subjects(gateway: Gateway, address: str, criteria: list[str]) -> list[str]:
    with imap(gateway, address) as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(criteria)
        if not uids:
            return []
        fetched = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        headers = (data[b"BODY[HEADER.FIELDS (SUBJECT)]"] for data in fetched.values())
        return [str(BytesParser(policy=default).parsebytes(h)["Subject"]) for h in headers]


def flagged_subjects(gateway: Gateway, address: str) -> list[str]:
    """The subjects a desktop client sees flagged in the INBOX."""
    return _subjects(gateway, address, ["FLAGGED"])


def inbox_messages(gateway: Gateway, address: str) -> list[EmailMessage]:
    """Every message in the INBOX, parsed, as the recipient's own mail program reads it."""
    with imap(gateway, address) as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return [
            BytesParser(policy=default).parsebytes(data[b"BODY[]"]) for data in fetched.values()
        ]


def deliver_push(page: Page, origin: str, data: str) -> None:
    """Hand a push's decrypted text to the page's service worker over CDP, as Chromium does
    with what its push service brings (`ServiceWorker.deliverPushMessage`)."""
    session = page.context.new_cdp_session(page)
    registrations: list[dict] = []
    session.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(event["registrations"]),
    )
    session.send("ServiceWorker.enable")
    deadline = time.monotonic() + 15
    while not [r for r in registrations if not r.get("isDeleted")]:
        assert time.monotonic() < deadline, "no service worker registration seen over CDP"
        page.wait_for_timeout(50)
    registration = next(r for r in registrations if not r.get("isDeleted"))
    session.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": registration["registrationId"], "data": data},
    )
    session.detach()


def service_worker(context: BrowserContext) -> Worker:
    """The app's service worker, as Playwright sees it (once it has started)."""
    return (
        context.service_workers[0]
        if context.service_workers
        else context.wait_for_event("serviceworker")
    )


def shown_notifications(worker: Worker) -> list[dict]:
    """The notifications the service worker shows now, read inside it (title, body, data)."""
    return worker.evaluate(
        """async () => (await self.registration.getNotifications())
            .map(n => ({title: n.title, body: n.body, data: n.data}))"""
    )


def tap_notification(worker: Worker) -> None:
    """The user taps the notification the worker shows. Headless Chromium draws none to
    click, so the worker is sent the `notificationclick` event for that very notification."""
    worker.evaluate(
        """async () => {
            const [notification] = await self.registration.getNotifications();
            self.dispatchEvent(new NotificationEvent('notificationclick', {notification}));
        }"""
    )
