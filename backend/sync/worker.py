"""The sync worker: one selector loop over thousands of IMAP IDLE sockets, no thread per mailbox.

The loop thread only waits: on sockets (a server said something), on timers (re-IDLE,
reconnect after backoff) and on the lease heartbeat. Work that talks to a server (connect,
fetch, store) runs in a small thread pool, so 2,000 mailboxes connect concurrently and one
slow server never stalls the others. A mailbox is in exactly one place at a time: registered
in the selector, waiting on a timer, or in the pool.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import queue
import random
import selectors
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.orm import Session, sessionmaker

from backend.config import Settings
from backend.mail.imap import ImapEndpoint, ImapRefused, ImapUnavailable, connect
from backend.metrics import SYNC_CONNECTED as CONNECTED
from backend.metrics import SYNC_IDLE_EVENTS as IDLE_EVENTS
from backend.metrics import SYNC_LAG
from backend.metrics import SYNC_RECONNECTS as RECONNECTS
from backend.storage.database import session_scope
from backend.storage.models import Mailbox
from backend.sync import leases, store
from backend.sync.catch_up import catch_up, enable_condstore

log = logging.getLogger("estafette.sync")

# RFC 2177: servers may drop an IDLE after 30 minutes; imapclient advises renewing about
# every 10. Renewing also proves the connection is alive (half-open sockets time out here).
IDLE_RENEW_SECONDS = 9 * 60
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0


def backoff_delay(failures: int) -> float:
    """Exponential backoff with full jitter, so a restarted server is not stampeded."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(failures, 16))
    return random.uniform(ceiling / 2, ceiling)


@dataclass
class MailboxSession:
    """One mailbox's IMAP session as the loop sees it."""

    mailbox_id: int
    public_id: str
    settings_version: int
    endpoint: ImapEndpoint
    client: IMAPClient | None = None
    idle_since: float = 0.0
    failures: int = 0
    stopping: bool = False
    connected: bool = False
    empty_reads: int = 0
    generation: int = field(default=0)


def endpoint_for(mailbox: Mailbox) -> ImapEndpoint:
    return ImapEndpoint(
        address=mailbox.address,
        host=mailbox.imap_host,
        port=mailbox.imap_port,
        security=mailbox.imap_security,
        auth=mailbox.imap_auth,
        username=mailbox.imap_username or mailbox.address,
        secret=mailbox.imap_secret,
        certificate=mailbox.imap_certificate,
    )


class SyncWorker:
    """Holds leased mailboxes in IDLE and keeps their cache and outbox current."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        worker_id: str | None = None,
        pool_size: int = 16,
        max_mailboxes: int = 100_000,
        claim_batch: int = 500,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="sync")
        self._selector = selectors.DefaultSelector()
        self._done: queue.SimpleQueue[tuple[MailboxSession, Callable | None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._timers: list[tuple[float, int, int]] = []  # (due, mailbox id, generation)
        self._held: dict[int, MailboxSession] = {}
        self._max_mailboxes = max_mailboxes
        self._claim_batch = claim_batch
        self._lease_seconds = settings.sync_lease_seconds
        self._stop = threading.Event()

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until `stop` is set (or `self.stop()`); release leases on the way out."""
        stop = stop or self._stop
        log.info("sync worker %s starting", self.worker_id)
        next_heartbeat = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = now + self._lease_seconds / 3
                self._drain_done()
                self._fire_timers(now)
                timeout = max(0.0, min(next_heartbeat, self._next_timer()) - time.monotonic())
                for key, _events in self._selector.select(timeout=min(timeout, 1.0)):
                    if key.data is None:
                        self._drain_wake()
                    else:
                        self._on_readable(key.data)
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- leases -------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Renew our leases, drop the ones lost, restart changed ones, claim free ones."""
        try:
            with session_scope(self._sessions) as db:
                still_ours = leases.renew(
                    db=db, worker=self.worker_id, lease_seconds=self._lease_seconds
                )
                room = self._max_mailboxes - len(still_ours)
                claimed = (
                    leases.claim(
                        db=db,
                        worker=self.worker_id,
                        lease_seconds=self._lease_seconds,
                        limit=min(room, self._claim_batch),
                    )
                    if room > 0
                    else []
                )
                fresh = [(m.id, m.public_id, m.settings_version, endpoint_for(m)) for m in claimed]
        except Exception:
            log.exception("lease heartbeat failed; will retry")
            return
        for mailbox_id in list(self._held):
            version = still_ours.get(mailbox_id)
            if version is None or version != self._held[mailbox_id].settings_version:
                self._drop(mailbox_id, reclaim=version is not None)
        for mailbox_id, public_id, version, endpoint in fresh:
            if mailbox_id in self._held:
                continue
            session = MailboxSession(mailbox_id, public_id, version, endpoint)
            self._held[mailbox_id] = session
            self._submit(session, self._job_connect)

    def _drop(self, mailbox_id: int, *, reclaim: bool) -> None:
        """Stop syncing a mailbox: lease lost to another worker, or its settings changed."""
        session = self._held.pop(mailbox_id)
        session.stopping = True
        session.generation += 1
        self._unregister(session)
        self._pool.submit(self._close, session)
        if reclaim:  # settings changed: release so the next heartbeat claims it afresh
            with session_scope(self._sessions) as db:
                leases.release(db=db, worker=self.worker_id, mailbox_ids=[mailbox_id])

    # -- scheduling ---------------------------------------------------------------------

    def _submit(self, session: MailboxSession, job: Callable[[MailboxSession], None]) -> None:
        generation = session.generation

        def run() -> None:
            outcome: Callable | None = None
            try:
                job(session)
            except (ImapUnavailable, ImapRefused, IMAPClientError, OSError, ssl.SSLError) as exc:
                outcome = self._failure_handler(session, exc)
            except Exception as exc:  # a bug must not kill the loop or lose the mailbox
                log.exception("sync job failed for mailbox %s", session.public_id)
                outcome = self._failure_handler(session, exc)
            if session.generation == generation:
                self._done.put((session, outcome))
                self._wake()

        self._pool.submit(run)

    def _drain_done(self) -> None:
        while True:
            try:
                session, outcome = self._done.get_nowait()
            except queue.Empty:
                return
            if session.stopping or self._held.get(session.mailbox_id) is not session:
                continue
            if outcome is not None:
                outcome()
            elif session.client is not None:
                self._register(session)

    def _register(self, session: MailboxSession) -> None:
        sock = session.client.socket()
        self._selector.register(sock, selectors.EVENT_READ, session)
        due = session.idle_since + IDLE_RENEW_SECONDS
        heapq.heappush(self._timers, (due, session.mailbox_id, session.generation))
        # TLS may already hold decrypted bytes the kernel will never signal again.
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._on_readable(session)

    def _unregister(self, session: MailboxSession) -> None:
        if session.client is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(session.client.socket())

    def _on_readable(self, session: MailboxSession) -> None:
        self._unregister(session)
        session.generation += 1
        IDLE_EVENTS.inc()
        self._submit(session, self._job_activity)

    def _next_timer(self) -> float:
        return self._timers[0][0] if self._timers else time.monotonic() + 1.0

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _due, mailbox_id, generation = heapq.heappop(self._timers)
            session = self._held.get(mailbox_id)
            if session is None or session.generation != generation:
                continue  # stale timer: the session moved on
            self._unregister(session)
            session.generation += 1
            job = self._job_connect if session.client is None else self._job_renew
            self._submit(session, job)

    def _failure_handler(self, session: MailboxSession, exc: BaseException) -> Callable:
        """Close, record the reason on the mailbox, and schedule a jittered reconnect."""
        self._close(session)
        session.failures += 1
        RECONNECTS.inc()
        refused = isinstance(exc, ImapRefused)
        state = "error" if refused or session.failures >= 3 else "connecting"
        detail = (
            str(exc)
            if isinstance(exc, ImapRefused | ImapUnavailable)
            else (f"connection lost ({type(exc).__name__}); reconnecting")
        )
        try:
            with session_scope(self._sessions) as db:
                store.set_sync_state(
                    db=db, mailbox_id=session.mailbox_id, state=state, detail=detail[:500]
                )
        except Exception:
            log.exception("could not record sync state")
        delay = backoff_delay(session.failures)
        log.warning("mailbox %s: %s; retry in %.1fs", session.public_id, type(exc).__name__, delay)

        def schedule() -> None:
            session.generation += 1
            heapq.heappush(
                self._timers, (time.monotonic() + delay, session.mailbox_id, session.generation)
            )

        return schedule

    # -- jobs (run in the pool) ---------------------------------------------------------

    def _job_connect(self, session: MailboxSession) -> None:
        client = connect(session.endpoint, ca_bundle=self._settings.ca_bundle)
        session.client = client
        enable_condstore(client)
        selected = client.select_folder("INBOX")
        catch_up(client, self._sessions, mailbox_id=session.mailbox_id, selected=selected)
        with session_scope(self._sessions) as db:
            store.set_sync_state(db=db, mailbox_id=session.mailbox_id, state="ok")
        self._start_idle(session)
        session.failures = 0
        session.connected = True
        CONNECTED.inc()

    def _job_activity(self, session: MailboxSession) -> None:
        started = time.monotonic()
        responses = session.client.idle_check(timeout=0)
        if any(_is_bye(r) for r in responses):
            raise ImapUnavailable("server closed the session (BYE)")
        if not responses:
            # imapclient reports EOF as "no responses"; EOF stays readable forever, while a
            # partial TLS record completes on the next read. Three empty reads mean closed.
            session.empty_reads += 1
            if session.empty_reads >= 3:
                raise ImapUnavailable("connection closed by the server")
            return
        session.empty_reads = 0
        session.client.idle_done()
        catch_up(session.client, self._sessions, mailbox_id=session.mailbox_id)
        self._start_idle(session)
        SYNC_LAG.observe(time.monotonic() - started)

    def _job_renew(self, session: MailboxSession) -> None:
        session.client.idle_done()
        catch_up(session.client, self._sessions, mailbox_id=session.mailbox_id)
        self._start_idle(session)

    def _start_idle(self, session: MailboxSession) -> None:
        session.client.idle()
        session.idle_since = time.monotonic()

    def _close(self, session: MailboxSession) -> None:
        client, session.client = session.client, None
        if client is None:
            return
        if session.connected:
            session.connected = False
            CONNECTED.dec()
        with contextlib.suppress(OSError, IMAPClientError):
            client.shutdown()

    def _shutdown(self) -> None:
        for session in list(self._held.values()):
            session.stopping = True
            self._unregister(session)
            self._close(session)
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            with session_scope(self._sessions) as db:
                leases.release(db=db, worker=self.worker_id)
        except Exception:
            log.exception("could not release leases at shutdown")
        self._selector.close()
        log.info("sync worker %s stopped", self.worker_id)


def _is_bye(response: tuple) -> bool:
    return bool(response) and response[0] == b"BYE"
