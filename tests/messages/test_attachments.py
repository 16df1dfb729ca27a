"""Attachments and IHE_XDM.ZIP documents, streamed from real Dovecot."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import unquote

import pytest
from sqlalchemy import update

from backend.mail.xdm import ArchiveRejected, open_archive
from backend.storage.models import Mailbox
from devtools import corpus, samples
from mobile_api.messages.routes import content_disposition
from tests.messages.support import Inbox
from tests.support import body


def _cda() -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(samples.xdm_zip_bytes())) as archive:
        return archive.read("IHE_XDM/SUBSET01/DOC0001.XML")


def test_an_xdm_discharge_letter_lists_its_cda_document_and_patient(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(samples.xdm_discharge_letter(to=inbox.address)))

    assert message["subject"].startswith("Lettre de liaison à la sortie")
    assert "XDM/1.0/DDM+" not in message["subject"]
    assert message["headers"]["x-mss-codecda"] == "11490-0"
    [archive] = message["attachments"]
    assert archive["filename"] == "IHE_XDM.ZIP"
    assert archive["documents"] == [
        {
            "title": "Lettre de liaison à la sortie – Rythmologie",
            "code": "11490-0",
            "code_display": "Lettre de liaison à la sortie d'un établissement de soins",
            "class_code": None,
            "content_type": "text/xml",
            "part": f"{archive['part']}/xdm/1",
            "patient": {
                "ins": samples.DEMO_PATIENT.ins,
                "name": "Lucien FICTIF",
                "birth_date": "1985-01-15",
            },
        }
    ]
    assert message["patient"]["ins"] == samples.DEMO_PATIENT.ins
    assert message["patient"]["name"] == "Lucien FICTIF"


def test_the_cda_document_is_served_on_its_own_from_the_archive(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.xdm_discharge_letter(to=inbox.address))

    response = inbox.download(message_id, "2/xdm/1")

    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.data == _cda()
    assert response.headers["Content-Disposition"].startswith('attachment; filename="DOC0001.XML"')


def test_the_whole_archive_downloads_byte_for_byte(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.xdm_discharge_letter(to=inbox.address))

    response = inbox.download(message_id, "2")

    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.data == samples.xdm_zip_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_large_attachment_streams_in_chunks_from_imap_and_arrives_intact(inbox: Inbox) -> None:
    payload = os.urandom(900 * 1024)  # base64 ≈ 1.2 MB: several partial fetches
    message_id = inbox.deliver(corpus.with_attachment(payload, "irm.dcm", "application", "dicom"))

    response = inbox.download(message_id, "2")

    assert response.status_code == 200
    assert response.is_streamed
    chunks = list(response.response)
    assert len(chunks) > 1
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(payload).digest()
    assert response.mimetype == "application/dicom"


def test_nested_parts_download_by_their_imap_part_numbers(inbox: Inbox) -> None:
    raw, expected = corpus.nested_multiparts()
    message_id = inbox.deliver(raw)

    for part, content in expected.items():
        response = inbox.download(message_id, part)
        assert response.status_code == 200, part
        assert response.data == content, part


def test_a_truncated_base64_attachment_still_downloads_what_arrived(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.malformed(to=inbox.address))

    response = inbox.download(message_id, "2")

    assert response.status_code == 200
    assert response.data.startswith(b"%PDF-1.4")


def test_a_zip_bomb_is_listed_without_documents_and_refused_when_opened(inbox: Inbox) -> None:
    message_id = inbox.deliver(corpus.zip_bomb_xdm())

    [archive] = inbox.read(message_id)["attachments"]
    assert archive["documents"] is None
    assert archive["warnings"] == ["archive_rejected"]
    response = inbox.download(message_id, "2/xdm/1")
    assert response.status_code == 422
    assert body(response)["code"] == "archive_rejected"


def test_an_archive_with_paths_climbing_out_is_refused(inbox: Inbox) -> None:
    message_id = inbox.deliver(corpus.path_traversal_xdm())

    [archive] = inbox.read(message_id)["attachments"]
    assert archive["documents"] is None
    assert archive["warnings"] == ["archive_rejected"]
    assert body(inbox.download(message_id, "2/xdm/1"))["code"] == "archive_rejected"


def test_metadata_with_entity_expansion_is_refused_not_expanded(inbox: Inbox) -> None:
    message_id = inbox.deliver(corpus.entity_expansion_xdm())

    [archive] = inbox.read(message_id)["attachments"]
    assert archive["warnings"] == ["archive_rejected"]


@pytest.mark.parametrize("part", ["9", "1.2.3.4", "abc", "2/xdm/7", "2/../1", "0", "2/xdm/0"])
def test_a_part_that_does_not_exist_is_not_found(inbox: Inbox, part: str) -> None:
    message_id = inbox.deliver(samples.xdm_discharge_letter(to=inbox.address))

    response = inbox.download(message_id, part)

    assert response.status_code == 404
    assert body(response)["code"] == "not_found"


def test_a_download_while_the_server_is_down_is_503_not_a_cut_stream(
    inbox: Inbox, dovecot_services
) -> None:
    message_id = inbox.deliver(samples.xdm_discharge_letter(to=inbox.address))
    with dovecot_services.sessions.begin() as db:
        db.execute(update(Mailbox).where(Mailbox.public_id == inbox.mailbox_id).values(imap_port=1))

    response = inbox.download(message_id, "2")

    assert response.status_code == 503
    assert body(response)["code"] == "mailbox_unavailable"


def test_a_message_read_once_reopens_from_the_encrypted_cache(
    inbox: Inbox, dovecot_services
) -> None:
    canary = "CANARY" + os.urandom(6).hex()
    message_id = inbox.deliver(samples.canary_message(canary, to=inbox.address))
    first = inbox.read(message_id)
    with dovecot_services.sessions.begin() as db:
        db.execute(update(Mailbox).where(Mailbox.public_id == inbox.mailbox_id).values(imap_port=1))

    again = inbox.read(message_id)
    attachment = inbox.download(message_id, "2")

    assert again["text"] == first["text"]
    assert attachment.status_code == 200 and attachment.data.startswith(b"%PDF")
    cache_dir = dovecot_services.settings.var_dir / "body-cache"
    stored = b"".join(path.read_bytes() for path in cache_dir.iterdir())
    assert stored and canary.encode() not in stored


@pytest.mark.parametrize(
    ("filename", "expected_ascii", "expected_utf8"),
    [
        ("compte-rendu.pdf", "compte-rendu.pdf", "compte-rendu.pdf"),
        ("lettre de sortie é.pdf", "lettre de sortie e.pdf", "lettre%20de%20sortie%20%C3%A9.pdf"),
        ('a"b;c.pdf', "a_b_c.pdf", "a%22b%3Bc.pdf"),
        ("../../etc/passwd", "passwd", "passwd"),
        ("C:\\Windows\\x.exe", "x.exe", "x.exe"),
        ("line\r\nbreak.txt", "linebreak.txt", "linebreak.txt"),
        (None, "attachment", "attachment"),
    ],
)
def test_content_disposition_is_rfc6266_safe(
    filename: str | None, expected_ascii: str, expected_utf8: str
) -> None:
    header = content_disposition(filename)

    assert header == f"attachment; filename=\"{expected_ascii}\"; filename*=UTF-8''{expected_utf8}"
    assert "\r" not in unquote(header) and "\n" not in unquote(header)


def test_the_archive_checks_refuse_a_member_larger_than_declared_ratios() -> None:
    import io

    data = corpus.zip_bomb_xdm()
    from email import message_from_bytes, policy

    zipped = message_from_bytes(data, policy=policy.default).get_payload()[1]
    with pytest.raises(ArchiveRejected):
        open_archive(io.BytesIO(zipped.get_payload(decode=True)))


def test_a_download_abandoned_before_its_first_byte_releases_the_imap_session(
    inbox: Inbox,
) -> None:
    from tests.support import wait_until

    message_id = inbox.deliver(
        corpus.with_attachment(os.urandom(600_000), "x.bin", "application", "octet-stream")
    )

    def sessions() -> int:
        who = inbox.dovecot.doveadm("who", "-1", inbox.address)
        return sum(1 for line in who.splitlines() if inbox.address in line and "imap" in line)

    response = inbox.download(message_id, "2")
    assert response.status_code == 200
    assert sessions() == 1  # the stream holds its session while the client reads
    response.close()  # the client went away without reading

    wait_until(lambda: sessions() == 0, what="the IMAP session to be released")
