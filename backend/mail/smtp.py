"""The one SMTP connection factory: submission over TLS, then the mailbox's auth mode.

STARTTLS on 587 (RFC 3207) or implicit TLS on 465 (RFC 8314), with the same verifying
context as IMAP (backend/mail/tls.py, ESTAFETTE_CA_BUNDLE, TLS 1.2 at least). Auth modes
mirror IMAP's: `password` (AUTH PLAIN/LOGIN), `master` (SASL PLAIN with an authorization
identity, RFC 4616), `certificate` (client certificate + AUTH EXTERNAL, RFC 4422 app. A),
`xoauth2` (a bearer token). The only module that imports smtplib.
"""

from __future__ import annotations

import contextlib
import hashlib
import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

from backend.mail.imap import ImapEndpoint, ImapRefused
from backend.mail.tls import client_context

DEFAULT_TIMEOUT = 30.0
SUBMISSION_TLS_PORT = 465
# RFC 3461: ask for a DSN on success and on failure, with the headers only (no content back).
DSN_NOTIFY = "NOTIFY=SUCCESS,FAILURE"
DSN_RETURN = "RET=HDRS"
ENVID_MAX = 100  # RFC 3461 §4.4: an ENVID is at most 100 characters


class SmtpUnavailable(Exception):
    """The server could not be reached, or answered 4xx: nothing was sent, retry later."""


class SmtpRefused(Exception):
    """The server refused us or the message (5xx, bad certificate, bad credentials)."""


# The same fields as IMAP's: one server, one set of credentials for this mailbox.
SmtpEndpoint = ImapEndpoint


@dataclass(frozen=True)
class Submitted:
    """The server took the message; `dsn_requested` only when it offers DSN (RFC 3461)."""

    dsn_requested: bool
    refused: tuple[str, ...] = ()


@contextlib.contextmanager
def connect(
    endpoint: SmtpEndpoint, *, ca_bundle: Path | None, timeout: float = DEFAULT_TIMEOUT
) -> Iterator[smtplib.SMTP]:
    """An authenticated submission session, closed on exit; raises SmtpUnavailable/SmtpRefused."""
    try:
        context = client_context(
            ca_bundle,
            endpoint.certificate if endpoint.auth == "certificate" else None,
            endpoint.secret if endpoint.auth == "certificate" else None,
        )
    except (ValueError, ssl.SSLError) as exc:
        raise SmtpRefused(f"client certificate unusable: {type(exc).__name__}") from exc
    try:
        if endpoint.security == "tls":
            session: smtplib.SMTP = smtplib.SMTP_SSL(
                endpoint.host, endpoint.port, timeout=timeout, context=context
            )
        else:
            session = smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)
            session.ehlo()
            if not session.has_extn("starttls"):
                session.close()
                raise SmtpRefused("the server does not offer STARTTLS: refusing plain text")
            session.starttls(context=context)
        session.ehlo()
    except ssl.SSLCertVerificationError as exc:
        raise SmtpRefused(f"server certificate rejected: {exc.verify_message}") from exc
    except ssl.SSLError as exc:
        raise SmtpRefused(f"TLS handshake failed: {exc.reason}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpUnavailable(
            f"cannot reach {endpoint.host}:{endpoint.port}: {_reason(exc)}"
        ) from exc
    try:
        _authenticate(session, endpoint)
        _learn_capabilities(session)
        yield session
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            session.quit()
        session.close()


def _authenticate(session: smtplib.SMTP, endpoint: SmtpEndpoint) -> None:
    try:
        if endpoint.auth == "password":
            session.login(endpoint.username, endpoint.secret or "")
        elif endpoint.auth == "master":
            # username/secret are the master user's; the mailbox is the authorization identity.
            plain = f"{endpoint.address}\0{endpoint.username}\0{endpoint.secret or ''}"
            session.auth("PLAIN", lambda challenge=None: plain)
        elif endpoint.auth == "certificate":
            # RFC 4954: "=" is an empty initial response; the identity is the certificate's.
            code, reply = session.docmd("AUTH", "EXTERNAL =")
            if code != 235:
                raise smtplib.SMTPAuthenticationError(code, reply)
        elif endpoint.auth in ("xoauth2", "oauth_user"):
            if endpoint.token_provider is None:
                raise SmtpRefused("XOAUTH2 needs a token endpoint and client id on the mailbox")
            try:
                token = endpoint.token_provider()
            except ImapRefused as exc:  # the owner's token could not be had
                raise SmtpRefused(str(exc)) from exc
            offered = (session.esmtp_features.get("auth") or "").upper().split()
            if endpoint.auth == "oauth_user" and "OAUTHBEARER" in offered:
                initial = f"n,a={endpoint.username},\x01auth=Bearer {token}\x01\x01"
                session.auth("OAUTHBEARER", lambda challenge=None: initial)
            else:
                initial = f"user={endpoint.username}\x01auth=Bearer {token}\x01\x01"
                session.auth("XOAUTH2", lambda challenge=None: initial)
        else:
            raise SmtpRefused(f"unknown auth mode {endpoint.auth!r}")
    except smtplib.SMTPAuthenticationError as exc:
        raise SmtpRefused(f"authentication refused ({endpoint.auth})") from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise SmtpRefused(f"the server does not offer AUTH for {endpoint.auth}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpUnavailable(f"session broke during authentication: {_reason(exc)}") from exc


def _learn_capabilities(session: smtplib.SMTP) -> None:
    """EHLO again once authenticated: a proxy announces its relay's extensions only then.

    Dovecot's submission (2.3) is such a proxy: before AUTH, submission-login answers
    alone; after it, the capabilities include the relay MTA's, DSN among them.
    """
    try:
        session.ehlo()
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpUnavailable(f"session broke after authentication: {_reason(exc)}") from exc


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext: printable ASCII but "+" and "=" as is, anything else as +HH."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
        for c in value
    )


def envelope_id(message_id: str) -> str:
    """An ENVID naming the message: its Message-ID, or a digest of it when too long."""
    inner = message_id.strip().strip("<>")
    encoded = xtext(inner)
    return encoded if len(encoded) <= ENVID_MAX else hashlib.sha256(inner.encode()).hexdigest()


def send(
    session: smtplib.SMTP,
    message: EmailMessage,
    *,
    envelope_from: str,
    recipients: Sequence[str],
    request_dsn: bool = False,
) -> Submitted:
    """Submit one message; raise if no recipient took it.

    When some recipients were refused and others accepted, the message did go out: the
    caller gets the refused ones in `Submitted.refused` and must report them. A DSN is
    asked for only when the server offers it (RFC 3461 §4: never send its parameters
    otherwise): RET=HDRS and ENVID on MAIL, NOTIFY and ORCPT on each RCPT.
    """
    dsn = request_dsn and session.has_extn("dsn")
    mail_options, notify = [], []
    if dsn:
        mail_options = [DSN_RETURN, f"ENVID={envelope_id(str(message['Message-ID'] or ''))}"]
        notify = [DSN_NOTIFY]
    try:
        refused = _transaction(
            session,
            message.as_bytes(policy=policy.SMTP),
            envelope_from=envelope_from,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=lambda rcpt: [*notify, f"ORCPT=rfc822;{xtext(rcpt)}"] if dsn else [],
        )
    except smtplib.SMTPRecipientsRefused as exc:
        raise SmtpRefused(_describe(exc.recipients)) from exc
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        if 400 <= exc.smtp_code < 500:
            raise SmtpUnavailable(f"temporary refusal {exc.smtp_code}") from exc
        raise SmtpRefused(f"refused with {exc.smtp_code}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpUnavailable(f"session broke while sending: {_reason(exc)}") from exc
    return Submitted(dsn_requested=dsn, refused=tuple(sorted(refused)))


def _transaction(
    session: smtplib.SMTP,
    data: bytes,
    *,
    envelope_from: str,
    recipients: Sequence[str],
    mail_options: list[str],
    rcpt_options: Callable[[str], list[str]],
) -> dict[str, tuple[int, bytes]]:
    """MAIL, one RCPT per recipient, DATA; the refused recipients and their replies.

    smtplib's sendmail, but with options per recipient (ORCPT names each one).
    """
    options = list(mail_options)
    if session.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    if session.has_extn("8bitmime") and not data.isascii():
        options.append("BODY=8BITMIME")
    code, reply = session.mail(envelope_from, options)
    if code != 250:
        _reset(session)
        raise smtplib.SMTPSenderRefused(code, reply, envelope_from)
    refused = {}
    for recipient in recipients:
        code, reply = session.rcpt(recipient, rcpt_options(recipient))
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    if len(refused) == len(recipients):
        _reset(session)
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = session.data(data)
    if code != 250:
        _reset(session)
        raise smtplib.SMTPDataError(code, reply)
    return refused


def _reset(session: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        session.rset()


def _reason(exc: BaseException) -> str:
    """The error's kind and SMTP code only: a server's reply text may echo an address."""
    code = getattr(exc, "smtp_code", None)
    if code is not None:
        return f"{type(exc).__name__} {code}"
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else type(exc).__name__


def _describe(refused: dict) -> str:
    codes = sorted({str(code) for code, _reply in refused.values()})
    return f"{len(refused)} recipient(s) refused ({', '.join(codes)})"
