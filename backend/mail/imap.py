"""The one IMAP connection factory: TLS or STARTTLS, then the mailbox's MSSanté auth mode.

Auth modes (DESIGN.md): `password` (LOGIN), `master` (SASL PLAIN with an authorization
identity, RFC 4616), `certificate` (TLS client certificate + SASL EXTERNAL, RFC 4422
appendix A), `xoauth2` (a bearer token, as Pro Santé Connect issues).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.imapclient import (
    DELETED,
    DRAFT,
    DRAFTS,
    FLAGGED,
    SEEN,
    SENT,
    TRASH,
    _normalise_search_criteria,
)
from imapclient.response_parser import parse_fetch_response

from backend.metrics import IMAP_AUTH_FAILURES

# What the rest of the gateway knows of imapclient: an open session, how it fails, and the
# system flags and special-use names (RFC 3501, RFC 6154). Only backend/mail imports
# imapclient itself (tests/architecture/test_import_boundaries.py).
MailSession = IMAPClient
ProtocolError = IMAPClientError  # the server said NO or BAD, or the exchange broke
SessionAborted = IMAPClientAbortError  # the connection itself is gone
SESSION_ERRORS = (IMAPClientError, OSError, ssl.SSLError)  # any way a session can fail
__all__ = ["DELETED", "DRAFT", "DRAFTS", "FLAGGED", "SEEN", "SENT", "TRASH"]

DEFAULT_TIMEOUT = 30.0


class ImapUnavailable(Exception):
    """The server could not be reached or the session broke: retry with backoff."""


class ImapRefused(Exception):
    """The server refused us (bad credentials, bad certificate): needs an operator."""


class ReauthRequired(ImapRefused):
    """An `oauth_user` mailbox's owner must sign in again: their provider refused to
    refresh the token (session over, consent withdrawn), or there never was one."""


TOKEN_MODES = ("xoauth2", "oauth_user")


@dataclass(frozen=True)
class ImapEndpoint:
    """Everything needed to open one mailbox; secrets stay in memory only."""

    address: str
    host: str
    port: int
    security: str
    auth: str
    username: str
    secret: str | None = None
    certificate: bytes | None = None
    token_provider: Callable[[], str] | None = None


_contexts: dict[tuple[str | None, tuple[tuple[str, int], ...]], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _shared_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """One verifying context per version of the CA bundle and CRLs, shared by every session.

    Why: each context holds its own copy of the parsed CA store; thousands of sessions
    would each pay for it in memory and start-up CPU. A replaced bundle or a refreshed
    CRL gets a new one.
    """
    from backend.mail.tls import client_context, trust_version

    key = (str(ca_bundle) if ca_bundle else None, trust_version(ca_bundle))
    with _contexts_lock:
        if key not in _contexts:
            # Older versions of this bundle are dropped: hourly CRL refreshes would pile up.
            for stale in [k for k in _contexts if k[0] == key[0]]:
                del _contexts[stale]
            _contexts[key] = client_context(ca_bundle)
        return _contexts[key]


def _enable_keepalive(sock: socket.socket) -> None:
    """Half-open connections (a NAT that forgot us) are found by TCP keepalive."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def connect(
    endpoint: ImapEndpoint, *, ca_bundle: Path | None, timeout: float = DEFAULT_TIMEOUT
) -> IMAPClient:
    """Open, secure and authenticate an IMAP session, or raise ImapUnavailable/ImapRefused."""
    from backend.mail.tls import client_context

    if endpoint.auth in TOKEN_MODES and endpoint.token_provider is None:
        raise ImapRefused("XOAUTH2 needs a token endpoint and client id on the mailbox")
    try:
        if endpoint.auth == "certificate":
            context = client_context(ca_bundle, endpoint.certificate, endpoint.secret)
        else:
            context = _shared_context(ca_bundle)
    except (ValueError, ssl.SSLError) as exc:
        raise ImapRefused(f"client certificate unusable: {type(exc).__name__}") from exc
    try:
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.security == "tls",
            ssl_context=context,
            timeout=timeout,
        )
        if endpoint.security == "starttls":
            client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        raise ImapRefused(f"server certificate rejected: {exc.verify_message}") from exc
    except ssl.SSLError as exc:
        raise ImapRefused(f"TLS handshake failed: {exc.reason}") from exc
    except (OSError, IMAPClientError) as exc:
        raise ImapUnavailable(f"cannot reach {endpoint.host}:{endpoint.port}: {exc}") from exc
    _enable_keepalive(client.socket())
    try:
        _authenticate(client, endpoint)
    except LoginError as exc:
        IMAP_AUTH_FAILURES.inc()
        _close_quietly(client)
        if forget := getattr(endpoint.token_provider, "forget", None):
            forget()  # the token may have been revoked early: never offer it twice
        raise ImapRefused(f"authentication refused ({endpoint.auth})") from exc
    except (ImapRefused, ImapUnavailable):
        _close_quietly(client)
        raise
    except (OSError, IMAPClientError) as exc:
        _close_quietly(client)
        raise ImapUnavailable(f"session broke during authentication: {exc}") from exc
    return client


def input_waiting(client: IMAPClient) -> bool:
    """Whether responses already sit in imaplib's read buffer (or TLS's), unparsed.

    Why: a response that arrived with the previous one (e.g. EXISTS right behind IDLE's
    continuation) was read off the socket already, so a selector will never signal it.
    """
    sock = client.socket()
    try:
        sock.setblocking(False)
        return bool(client._imap.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except (OSError, ValueError):
        return True  # a broken socket: let the next read meet the error and reconnect
    finally:
        with contextlib.suppress(OSError, ValueError):
            sock.setblocking(True)
            client._set_read_timeout()


def read_idle_responses(client: IMAPClient) -> list[bytes]:
    """Every untagged response waiting during IDLE, without blocking; raw lines.

    Unlike imapclient's idle_check it also drains what imaplib has buffered (see
    input_waiting). Raises ImapUnavailable on BYE or when the server closed the socket.
    """
    sock = client.socket()
    sock.setblocking(False)
    lines: list[bytes] = []
    try:
        while True:
            try:
                line = client._imap._get_line()
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            except IMAPClientAbortError as exc:
                if "EOF" not in str(exc):
                    raise
                raise ImapUnavailable("connection closed by the server") from exc
            if line.startswith(b"* BYE"):
                raise ImapUnavailable("server closed the session (BYE)")
            lines.append(line)
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            client._set_read_timeout()
    return lines


CHANGE_NOTICES = ("EXISTS", "EXPUNGE", "FETCH", "VANISHED")


def take_change_notices(client: IMAPClient) -> set[bytes]:
    """The kinds of change (EXISTS, EXPUNGE, FETCH, VANISHED) the server told of in answer
    to our own commands, taken out of imaplib's untagged responses.

    Why: a server may announce a change with any command's answer (RFC 3501 §5.2, §7), and
    announces it once. IDLE started after such an answer would wait for news already given.
    """
    pending = client._imap.untagged_responses
    return {kind.encode() for kind in CHANGE_NOTICES if pending.pop(kind, None)}


def change_kinds(responses: list[tuple]) -> set[bytes]:
    """The kinds of change among parsed responses (`idle_check`, `idle_done`): imapclient
    gives `(3, b"EXISTS")` but `(b"VANISHED", 5)`, so the kind is either of the first two."""
    kinds = {kind.encode() for kind in CHANGE_NOTICES}
    return {
        item
        for response in responses
        for item in response[:2]
        if isinstance(item, bytes) and item in kinds
    }


def fetch_changes_since(
    client: IMAPClient, last_uid: int, modseq: int
) -> tuple[dict[int, dict], list[int]]:
    """Flag changes and expunged UIDs in `1:last_uid` since `modseq` (RFC 7162 §3.2.6).

    One `UID FETCH 1:<last> (FLAGS MODSEQ) (CHANGEDSINCE <modseq> VANISHED)`: a FETCH for
    each message whose flags changed, and `VANISHED (EARLIER)` naming the UIDs expunged.
    VANISHED responses that came earlier (in IDLE, or during other commands) wait in
    imaplib's untagged responses and are taken too. Needs QRESYNC enabled. imapclient's
    fetch() cannot take a UID range (it filters its answer by the ids asked for), hence
    the command is sent here and its answer parsed with imapclient's parser.
    """
    imap = client._imap
    tag = imap._command(
        "UID",
        "FETCH",
        f"1:{last_uid}",
        "(FLAGS MODSEQ)",
        f"(CHANGEDSINCE {modseq} VANISHED)",
    )
    typ, data = imap._command_complete("FETCH", tag)
    if typ != "OK":
        raise IMAPClientError(f"UID FETCH CHANGEDSINCE failed: {data!r}")
    typ, data = imap._untagged_response(typ, data, "FETCH")
    changed = parse_fetch_response(data, client.normalise_times, True)
    vanished = vanished_uids(imap.untagged_responses.pop("VANISHED", []), up_to=last_uid)
    return dict(changed), vanished


def vanished_uids(responses: list[bytes], *, up_to: int) -> list[int]:
    """The UIDs of VANISHED responses (`(EARLIER) 41,43:45` or `41,43:45`, §3.2.10) up to
    `up_to`: the UIDs we can hold. A server may name far more (`1:4294967295`)."""
    uids: set[int] = set()
    for data in responses:
        text = data.decode("ascii") if isinstance(data, bytes) else str(data)
        uids.update(_uid_set(text.removeprefix("(EARLIER)").strip(), up_to=up_to))
    return sorted(uids)


def _uid_set(text: str, *, up_to: int | None = None) -> set[int]:
    """`41,43:45` as UIDs (RFC 3501 sequence-set, no `*`), none above `up_to`."""
    uids: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition(":")
        first, last = sorted((int(low), int(high or low)))
        uids.update(range(first, (last if up_to is None else min(last, up_to)) + 1))
    return uids


def search_uids(client: IMAPClient, criteria: list[str], charset: str | None = None) -> list[int]:
    """UID SEARCH; with ESEARCH (RFC 4731) where offered, whose answer names ranges
    (`ALL 1:4000`), not each UID: a search that matches most of a folder stays small."""
    if b"ESEARCH" not in client.capabilities():
        return list(client.search(criteria, charset=charset))
    args = [b"RETURN", b"(ALL)"]
    if charset:
        args += [b"CHARSET", charset.encode("ascii")]
    args += _normalise_search_criteria(criteria, charset)
    answers = client._raw_command_untagged(b"SEARCH", args, response_name="ESEARCH")
    uids: set[int] = set()
    for data in answers:  # (TAG "A5") UID ALL 1:3,5 — or no ALL when nothing matched
        words = (data.decode("ascii") if isinstance(data, bytes) else str(data)).split()
        for at, word in enumerate(words[:-1]):
            if word.upper() == "ALL":
                uids |= _uid_set(words[at + 1])
    return sorted(uids)


def _authenticate(client: IMAPClient, endpoint: ImapEndpoint) -> None:
    if endpoint.auth == "password":
        client.login(endpoint.username, endpoint.secret or "")
    elif endpoint.auth == "master":
        # username/secret are the master user's; the mailbox is the authorization identity.
        client.plain_login(
            endpoint.username, endpoint.secret or "", authorization_identity=endpoint.address
        )
    elif endpoint.auth == "certificate":
        client.sasl_login("EXTERNAL", lambda _challenge: b"")
    elif endpoint.auth == "xoauth2":
        assert endpoint.token_provider is not None  # checked before connecting
        client.oauth2_login(endpoint.username, endpoint.token_provider())
    elif endpoint.auth == "oauth_user":
        # The owner's own token, by the mechanism the server offers: OAUTHBEARER (RFC 7628)
        # first, else XOAUTH2.
        assert endpoint.token_provider is not None  # checked before connecting
        token = endpoint.token_provider()
        if b"AUTH=OAUTHBEARER" in client.capabilities():
            client.oauthbearer_login(endpoint.username, token)
        else:
            client.oauth2_login(endpoint.username, token)
    else:
        raise ImapRefused(f"unknown auth mode {endpoint.auth!r}")


def _close_quietly(client: IMAPClient) -> None:
    with contextlib.suppress(OSError, IMAPClientError):
        client.shutdown()
