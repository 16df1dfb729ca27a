"""The SMTP relay behind the throwaway Dovecot's submission service.

Why: submission cannot deliver by itself and there is no MTA in tests. The relay records
each message (with its ESMTP parameters, for the DSN tests) and hands it to a callback,
which delivers local recipients over LMTP. A test may flip DSN support or refuse
recipients on a running server through the owner's `relay_dsn` and `relay_refuses`.

Why not aiosmtpd: it answers 555 to MAIL FROM parameters it does not know, and RFC 3461's
RET and ENVID are among them (aio-libs/aiosmtpd#299); the delivery-status tests send them,
and this relay must take them as a DSN-capable MTA does.
"""

from __future__ import annotations

import re
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RelayedMessage:
    """One message that Dovecot's submission service relayed onwards."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    mail_params: str = ""
    # ESMTP parameters of each RCPT (RFC 3461 NOTIFY/ORCPT...), in `recipients` order.
    rcpt_params: tuple[str, ...] = ()


class RelaySink(socketserver.ThreadingTCPServer):
    """A minimal SMTP server that Dovecot's submission service relays to.

    Why: submission cannot deliver by itself, and there is no MTA in tests.
    The sink records each message and hands it to a callback (which delivers
    local recipients over LMTP).
    """

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        on_message: Callable[[RelayedMessage], None],
        owner: Any = None,
    ):
        super().__init__(address, _SmtpSession)
        self.on_message = on_message
        # Read live on each EHLO/RCPT, so a test can flip DSN or refusals on a running server.
        self.owner = owner
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="dovecot-relay-sink"
        )
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


EHLO_REPLY = "\r\n".join(
    [
        "250-localhost",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
        "250-SMTPUTF8",
        "250 SIZE 52428800",
    ]
)
EHLO_REPLY_WITH_DSN = EHLO_REPLY.replace("250 SIZE", "250-DSN\r\n250 SIZE")


class _SmtpSession(socketserver.StreamRequestHandler):
    server: RelaySink
    max_line = 1 << 20

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 estafette-relay ESMTP ready")
        owner = self.server.owner
        mail_from, params, recipients, rcpt_params = "", "", [], []
        while line := self.rfile.readline(self.max_line):
            verb, _, argument = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply(EHLO_REPLY_WITH_DSN if owner and owner.relay_dsn else EHLO_REPLY)
            elif verb in ("HELO", "NOOP"):
                self.reply("250 OK")
            elif verb == "MAIL":
                mail_from, params = _parse_path(argument)
                recipients, rcpt_params = [], []
                self.reply("250 2.1.0 OK")
            elif verb == "RCPT":
                recipient, recipient_params = _parse_path(argument)
                if owner and recipient.lower() in owner.relay_refuses:
                    self.reply("550 5.1.1 Recipient refused by the relay")
                    continue
                recipients.append(recipient)
                rcpt_params.append(recipient_params)
                self.reply("250 2.1.5 OK")
            elif verb == "DATA":
                self.reply(self._data(mail_from, params, recipients, rcpt_params))
                mail_from, params, recipients, rcpt_params = "", "", [], []
            elif verb == "RSET":
                mail_from, params, recipients, rcpt_params = "", "", [], []
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 5.5.1 Command not implemented")

    def _data(
        self, mail_from: str, params: str, recipients: list[str], rcpt_params: list[str]
    ) -> str:
        if not recipients:
            return "503 5.5.1 No recipients"
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        chunks = []
        while (line := self.rfile.readline(self.max_line)) not in (b".\r\n", b".\n", b""):
            chunks.append(line[1:] if line.startswith(b"..") else line)
        message = RelayedMessage(
            mail_from, tuple(recipients), b"".join(chunks), params, tuple(rcpt_params)
        )
        try:
            self.server.on_message(message)
        except Exception as exc:
            return f"451 4.3.0 Local delivery failed: {exc}"
        return "250 2.0.0 Queued"


def _parse_path(argument: str) -> tuple[str, str]:
    """Split 'FROM:<a@b> BODY=8BITMIME' into ('a@b', 'BODY=8BITMIME')."""
    match = re.search(r"<([^>]*)>\s*(.*)", argument)
    if not match:
        return argument.partition(":")[2].strip(), ""
    return match.group(1), match.group(2)
