"""The clinician's path through the web client, in Debian's Chromium, against the real
gateway and a real Dovecot: at phone, tablet and desktop sizes.

Each size signs a clinician of its own in (TOTP enrolment included), reads, acts, goes
offline, is locked after idling and signs out. Every main screen is screenshot under
web/screenshots/, checked for horizontal overflow and for axe-core violations.
"""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage

import pytest
from client import Clinician, flagged_subjects, inbox_messages
from harness import COLLEAGUE, PASSWORD, SECRETARIAT, SIZES
from playwright.sync_api import expect

from tests.support import wait_until

PDF = b"%PDF-1.4\n% Estafette test attachment\n"
# How many message rows the page shows when it first calls the API.
ROWS_AT_FIRST_API_CALL = """
const fetchFirst = window.fetch;
window.fetch = function (input, init) {
  const api = String(input?.url ?? input).includes('/api/v1/');
  if (api && window.__rowsAtFirstApiCall === undefined) {
    window.__rowsAtFirstApiCall = document.querySelectorAll('#pane-list a.row').length;
  }
  return fetchFirst.call(this, input, init);
};
"""


def _letter(to: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Dr Sophie Bernard <{COLLEAGUE}>"
    message["To"] = to
    message["Subject"] = subject
    message["X-MSS-NIL"] = "test"
    message["Disposition-Notification-To"] = COLLEAGUE
    message.set_content("Bonjour, voici le compte rendu de l'échographie.")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="echographie.pdf")
    return bytes(message)


@pytest.fixture(params=list(SIZES))
def clinician(request, gateway, browser, axe_script):
    size = request.param
    width, height = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height},
        locale="fr-FR",
        permissions=["notifications"],
        accept_downloads=True,
        has_touch=size != "desktop",
        color_scheme="dark" if size == "phone" else "light",  # on call, at night
    )
    page = context.new_page()
    page.clock.install()
    page.goto(gateway.base_url + "/")
    yield Clinician(page, gateway, gateway.clinicians[size].username, axe_script, size)
    context.close()


def test_a_clinician_reads_answers_and_signs_out_in_the_browser(clinician, gateway) -> None:
    page = clinician.page
    elsewhere: list[str] = []  # any request that leaves the gateway's origin
    page.on(
        "request",
        lambda r: (
            elsewhere.append(r.url)
            if r.url.startswith("http") and not r.url.startswith(gateway.base_url)
            else None
        ),
    )
    personal = gateway.clinicians[clinician.size].address
    clinician.check_screen("sign-in")

    # Enrol TOTP with the API's QR code, sign in, see the mailboxes.
    clinician.enrol_and_sign_in(PASSWORD)
    mailboxes = page.get_by_role("navigation", name="Boîtes aux lettres")
    expect(mailboxes.get_by_role("heading", name="Mes boîtes")).to_be_visible()
    expect(mailboxes.get_by_role("heading", name="Boîtes déléguées")).to_be_visible()
    expect(mailboxes.get_by_text(personal)).to_be_visible()
    expect(mailboxes.get_by_text("secretariat@chu-test.mssante.fr")).to_be_visible()
    expect(mailboxes.get_by_text("À jour").first).to_be_visible(timeout=30_000)
    clinician.check_screen("mailboxes")

    # The message list, with its unread marks.
    mailboxes.get_by_text(personal).click()
    rows = page.locator("#pane-list a.row")
    expect(rows).to_have_count(2, timeout=20_000)
    expect(page.locator("#pane-list .mark.unread").first).to_be_attached()
    mailbox_id = re.search(r"#/m/([^/]+)", page.url).group(1)
    clinician.check_screen("list")

    # A message delivered to Dovecot appears without a reload.
    subject = f"Échographie {uuid.uuid4().hex[:6]}"
    gateway.deliver(personal, _letter(personal, subject))
    row = rows.filter(has_text=subject)
    expect(row).to_be_visible(timeout=45_000)

    # Open it: its text, an attachment to download, the read-receipt request.
    row.click()
    reader = page.locator("#main")
    expect(reader.get_by_role("heading", name=subject)).to_be_visible()
    expect(reader.get_by_text("compte rendu de l'échographie")).to_be_visible()
    expect(reader.get_by_text("accusé de lecture")).to_be_visible()
    with page.expect_download() as download:
        reader.get_by_role("button", name="Télécharger echographie.pdf").click()
    assert download.value.suggested_filename == "echographie.pdf"
    assert download.value.path().read_bytes() == PDF
    clinician.check_screen("message")

    # Flag it: a second IMAP client sees \Flagged on the server.
    reader.get_by_role("button", name="Suivre", exact=True).click()
    expect(reader.get_by_role("button", name="Ne plus suivre")).to_be_visible()
    wait_until(
        lambda: subject in flagged_subjects(gateway, personal),
        timeout=20,
        what="the flag on the IMAP server",
    )

    # Reply, with an attachment: the colleague finds both in her mailbox.
    reader.get_by_role("link", name="Répondre").click()
    expect(page.get_by_label("À", exact=True)).to_have_value(COLLEAGUE)
    page.get_by_label("Message", exact=True).fill("Merci, je le vois en consultation jeudi.")
    page.get_by_label("Pièces jointes").set_input_files(
        files=[{"name": "ordonnance.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    page.get_by_role("button", name="Envoyer").click()
    expect(page.get_by_text("Message envoyé")).to_be_visible(timeout=20_000)
    reply = wait_until(
        lambda: [m for m in inbox_messages(gateway, COLLEAGUE) if subject in str(m["Subject"])],
        timeout=30,
        what="the reply in the colleague's mailbox",
    )[0]
    assert str(reply["Subject"]).startswith("RE:")
    assert "consultation jeudi" in reply.get_body(("plain",)).get_content()
    assert [a.get_filename() for a in reply.iter_attachments()] == ["ordonnance.pdf"]

    # The IHE XDM discharge letter: its CDA document, with patient and type.
    clinician.go(f"#/m/{mailbox_id}")
    rows.filter(has_text="Lettre de liaison").click()
    documents = page.locator("#main ul.documents")
    expect(documents).to_be_visible(timeout=20_000)
    expect(documents).to_contain_text("FICTIF")
    expect(documents).to_contain_text("Patient")
    clinician.check_screen("xdm-letter")

    # An HTML message (delegated mailbox): in a sandboxed frame, without its script, its
    # event handlers or its remote tracking pixel.
    secretariat = page.locator("#pane-mailboxes a.mailbox", has_text=SECRETARIAT)
    clinician.go(secretariat.get_attribute("href"))
    rows.filter(has_text="RCP d'oncologie").click()
    body = page.locator("#main iframe.body-frame")
    expect(body).to_have_attribute("sandbox", "")
    frame = page.frame_locator("#main iframe.body-frame")
    expect(frame.get_by_text("aura lieu le")).to_be_visible()
    expect(frame.locator("script, [onload], [onclick], img[src^=http]")).to_have_count(0)
    clinician.check_screen("html-message")
    assert elsewhere == []

    # A recipient outside the trust space is refused, plainly, and nothing is sent.
    clinician.go("#/compose")
    page.get_by_label("À", exact=True).fill("quelqu.un@gmail.com")
    page.get_by_label("Objet").fill("Hors espace de confiance")
    page.get_by_role("button", name="Envoyer").click()
    expect(page.get_by_role("alert").filter(has_text="espace de confiance")).to_be_visible()
    clinician.check_screen("compose")

    # Settings: this device, quiet hours and on-call.
    clinician.go("#/settings")
    expect(page.get_by_text("cet appareil")).to_be_visible()
    expect(page.get_by_label("Activer les heures calmes")).to_be_visible()
    clinician.check_screen("settings")

    # Offline (a basement): the list still opens, from the device.
    clinician.go(f"#/m/{mailbox_id}")
    expect(rows.filter(has_text=subject)).to_be_visible()
    page.context.set_offline(True)
    page.reload()
    expect(page.locator("#pane-list a.row").filter(has_text=subject)).to_be_visible()
    expect(page.get_by_text("Hors ligne")).to_be_visible()
    page.context.set_offline(False)

    # Online again, a start draws the list from the device before it calls the API at all.
    page.add_init_script(ROWS_AT_FIRST_API_CALL)
    page.reload()
    expect(rows.filter(has_text=subject)).to_be_visible()
    page.wait_for_function("window.__rowsAtFirstApiCall !== undefined")
    assert page.evaluate("window.__rowsAtFirstApiCall") > 0

    # Idle: the session locks, and opened bodies are wiped from the device.
    clinician.go(f"#/m/{mailbox_id}")
    assert clinician.stored_bodies() > 0
    page.clock.fast_forward("10:00")
    expect(page.get_by_role("heading", name="Session verrouillée")).to_be_visible()
    assert clinician.stored_bodies() == 0
    clinician.check_screen("locked")

    # A code unlocks it, and the list is drawn again at once from the device.
    page.get_by_label("Code à 6 chiffres").fill(clinician.code())
    page.get_by_role("button", name="Déverrouiller").click()
    expect(rows.filter(has_text=subject)).to_be_visible()
    page.clock.fast_forward("10:00")
    expect(page.get_by_role("heading", name="Session verrouillée")).to_be_visible()

    # Sign out: nothing of the session is left in IndexedDB or the caches.
    page.get_by_role("button", name="Se déconnecter").click()
    expect(page.get_by_label("Identifiant")).to_be_visible()
    assert clinician.stored() == {"databases": [], "caches": []}
    # A sync or a token refresh answering after the sign-out writes nothing back.
    late_write = page.evaluate(
        "() => import('/app/store.js').then((store) => store.setMeta('mailboxes', [])"
        ".then(() => 'written', () => 'refused'))"
    )
    assert late_write == "refused"
    assert clinician.stored() == {"databases": [], "caches": []}
