"""An IMAP session on a registered mailbox, for the api's on-demand work (read, act, send).

The one way the api side opens a mailbox: the connection comes from the one factory
(`backend.mail.imap.connect`) with the endpoint built from the mailbox's settings and the
timeout from `ESTAFETTE_IMAP_TIMEOUT_SECONDS`. A server that cannot be reached, or that
breaks the session, is `MailboxUnavailable` (503); a folder whose UIDVALIDITY changed no
longer holds what the cache says, so its messages are `NotFound`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from backend import errors
from backend.config import Settings
from backend.mail.endpoints import imap_endpoint_for
from backend.mail.imap import SESSION_ERRORS, ImapRefused, ImapUnavailable, MailSession, connect
from backend.storage.models import Folder, Mailbox

log = logging.getLogger("estafette.mail")


@contextlib.contextmanager
def imap_session(
    mailbox: Mailbox,
    settings: Settings,
    *,
    unreachable: str = "The mailbox server cannot be reached right now; try again shortly",
) -> Iterator[MailSession]:
    """The mailbox's authenticated session, logged out on the way out. `unreachable` is
    what the 503 tells the user (a send says that nothing was sent)."""
    try:
        client = connect(
            imap_endpoint_for(mailbox, settings),
            ca_bundle=settings.ca_bundle,
            timeout=settings.imap_timeout_seconds,
        )
    except (ImapUnavailable, ImapRefused) as exc:
        log.warning("IMAP unavailable for mailbox %s: %s", mailbox.public_id, exc)
        raise errors.MailboxUnavailable(unreachable) from exc
    try:
        yield client
    finally:
        with contextlib.suppress(*SESSION_ERRORS):
            client.logout()


@contextlib.contextmanager
def open_folder(
    mailbox: Mailbox, folder: Folder, *, settings: Settings, readonly: bool
) -> Iterator[MailSession]:
    """A selected folder of the mailbox, as the cache knows it."""
    with imap_session(mailbox, settings) as client:
        try:
            status = client.select_folder(folder.name, readonly=readonly)
            uidvalidity = status.get(b"UIDVALIDITY")
            known = folder.uidvalidity
            if known is not None and uidvalidity is not None and int(uidvalidity) != known:
                raise errors.NotFound("this message is no longer on the server")
            yield client
        except SESSION_ERRORS as exc:
            raise errors.MailboxUnavailable(
                "The mailbox server broke the session; try again shortly"
            ) from exc
