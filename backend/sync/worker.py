"""The sync worker: one selector loop over thousands of IMAP IDLE sockets, no thread per mailbox.

The loop thread only waits: on sockets (a server said something), on timers (re-IDLE,
reconnect after backoff) and on the lease heartbeat. Work that talks to a server (connect,
fetch, store) runs in a small thread pool, so 2,000 mailboxes connect concurrently and one
slow server never stalls the others. A mailbox is in exactly one place at a time: registered
in the selector, waiting on a timer, in the pool, or parked for a database outage.

A database outage is not a mailbox failure: it is logged once (and its end once), the
mailboxes keep their state and their IMAP sessions, the heartbeat probes the database every
DB_PROBE_SECONDS, and when it answers every parked mailbox catches up at once.
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

from sqlalchemy.orm import Session, sessionmaker

from backend.config import Settings
from backend.mail.endpoints import imap_endpoint_for
from backend.mail.imap import (
    ImapEndpoint,
    ImapRefused,
    ImapUnavailable,
    MailSession,
    ProtocolError,
    ReauthRequired,
    change_kinds,
    connect,
    input_waiting,
    read_idle_responses,
    take_change_notices,
)
from backend.mail.watching import (
    OVERFLOW,
    folder_news_in_lines,
    folder_news_in_responses,
    take_folder_notices,
    watch_every_folder,
)
from backend.metrics import SYNC_CATCH_UP_AGE as CATCH_UP_AGE
from backend.metrics import SYNC_CATCH_UP_INTERVAL as CATCH_UP_INTERVAL
from backend.metrics import SYNC_CONNECTED as CONNECTED
from backend.metrics import SYNC_IDLE_EVENTS as IDLE_EVENTS
from backend.metrics import SYNC_IDLE_RENEWALS as IDLE_RENEWALS
from backend.metrics import SYNC_LAG
from backend.metrics import SYNC_RECONNECTS as RECONNECTS
from backend.push.outbox import announce_auth_required
from backend.storage.database import session_scope
from backend.storage.outage import DatabaseOutage, is_database_outage
from backend.store import cache as store
from backend.sync import leases
from backend.sync.catch_up import catch_up, enable_change_tracking
from backend.sync.folders import poll_folders

log = logging.getLogger("estafette.sync")

# RFC 2177: servers may drop an IDLE after 30 minutes; imapclient advises renewing about
# every 10. Renewing also proves the connection is alive (half-open sockets time out here).
IDLE_RENEW_SECONDS = 9 * 60
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
REAUTH_RETRY_SECONDS = 5.0
STATE_FLUSH_SECONDS = 0.2
DB_PROBE_SECONDS = 1.0  # while the database is down: how often the heartbeat tries it


def _caught_up(session: MailboxSession) -> None:
    now = time.monotonic()
    CATCH_UP_INTERVAL.observe(now - session.succeeded_at)
    session.succeeded_at = now


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
    client: MailSession | None = None
    failures: int = 0
    stopping: bool = False
    connected: bool = False
    uidvalidity: int = 0
    condstore: bool = False
    qresync: bool = False
    generation: int = field(default=0)
    reauth_announced: bool = False  # auth.required was pushed for this spell
    notify: bool = False  # NOTIFY (RFC 5465) tells at once of mail in the other folders
    caught_up_at: float = 0.0  # INBOX's last full catch-up (a fresh SELECT)
    # INBOX's last successful catch-up of any kind (held since, when there was none yet).
    succeeded_at: float = field(default_factory=time.monotonic)
    folders_due: float = 0.0  # when the other folders are listed next
    # Changes announced in answer to our last commands, after the catch-up had passed them.
    news: set[bytes] = field(default_factory=set)
    folder_news: bool = False  # likewise, for the other folders (a NOTIFY STATUS)


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
        # Sync states are written in batches: one commit for a burst of 2,000 connects.
        self._pending_states: dict[int, tuple[str, str | None]] = {}
        self._states_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._outage = DatabaseOutage(log, "sync paused")
        self._parked: set[int] = set()  # mailboxes waiting for the database to answer
        CATCH_UP_AGE.set_function(self._worst_catch_up_age)

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until `stop` is set (or `self.stop()`); release leases on the way out."""
        stop = stop or self._stop
        log.info("sync worker %s starting", self.worker_id)
        next_heartbeat = next_flush = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_heartbeat:
                    more_waiting = self._heartbeat()
                    # A full claim batch means more free mailboxes: claim again at once.
                    if self._outage.down:
                        next_heartbeat = now + DB_PROBE_SECONDS
                    else:
                        next_heartbeat = now + (0.0 if more_waiting else self._lease_seconds / 3)
                self._drain_done()
                self._fire_timers(now)
                flush = self._pending_states and not self._outage.down
                if flush and now >= next_flush:
                    self._pool.submit(self._flush_states)
                    next_flush = now + STATE_FLUSH_SECONDS
                due = min(next_heartbeat, self._next_timer())
                if flush:
                    due = min(due, next_flush)
                timeout = max(0.0, due - time.monotonic())
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

    def _heartbeat(self) -> bool:
        """Renew our leases, drop the ones lost, restart changed ones, claim free ones.

        Holds about its fair share: above it (a worker joined) the excess is released for
        the others to claim; below it (one died), free and expired leases are claimed.
        Returns whether the claim filled its batch (more mailboxes may be free).
        """
        try:
            with session_scope(self._sessions) as db:
                still_ours = leases.renew(
                    db=db, worker=self.worker_id, lease_seconds=self._lease_seconds
                )
                capacities = leases.beat(
                    db=db,
                    worker=self.worker_id,
                    capacity=self._max_mailboxes,
                    lease_seconds=self._lease_seconds,
                )
                share = leases.fair_share(db=db, capacities=capacities, mine=self._max_mailboxes)
                if len(still_ours) > share:
                    excess = sorted(still_ours)[share:]
                    leases.release(db=db, worker=self.worker_id, mailbox_ids=excess)
                    for mailbox_id in excess:
                        del still_ours[mailbox_id]
                room = share - len(still_ours)
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
                fresh = [
                    (m.id, m.public_id, m.settings_version, imap_endpoint_for(m, self._settings))
                    for m in claimed
                ]
        except Exception as exc:
            if is_database_outage(exc):
                self._outage.failed(exc)
            else:
                log.exception("lease heartbeat failed; will retry")
            return False
        if self._outage.answered():
            self._resume_parked()
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
        return len(fresh) >= self._claim_batch

    def _drop(self, mailbox_id: int, *, reclaim: bool) -> None:
        """Stop syncing a mailbox: lease lost to another worker, or its settings changed."""
        session = self._held.pop(mailbox_id)
        self._parked.discard(mailbox_id)
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
            except Exception as exc:
                if session.stopping or session.generation != generation:
                    # Closed under the job (lease lost, shutdown): the failure is expected.
                    log.debug("job for dropped mailbox %s ended: %r", session.public_id, exc)
                    return
                if is_database_outage(exc):
                    self._outage.failed(exc)  # logged once for all mailboxes
                    outcome = self._park_outcome(session)
                elif not isinstance(
                    exc, ImapUnavailable | ImapRefused | ProtocolError | OSError | ssl.SSLError
                ):  # a bug must not kill the loop or lose the mailbox
                    log.exception("sync job failed for mailbox %s", session.public_id)
                if outcome is None:
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
                try:
                    self._register(session)
                except (OSError, ValueError, KeyError):  # the socket broke under us
                    self._unregister(session)
                    session.generation += 1
                    self._submit(session, self._job_broken)

    def _register(self, session: MailboxSession) -> None:
        sock = session.client.socket()
        self._selector.register(sock, selectors.EVENT_READ, session)
        due = min(session.caught_up_at + IDLE_RENEW_SECONDS, session.folders_due)
        heapq.heappush(self._timers, (due, session.mailbox_id, session.generation))
        # imaplib or TLS may already hold responses the kernel will never signal again, and
        # news that came before IDLE will not come again in it.
        if session.news or session.folder_news or input_waiting(session.client):
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
            job = self._job_connect if session.client is None else self._job_timer
            self._submit(session, job)

    def _park_outcome(self, session: MailboxSession) -> Callable:
        """The database is down: the mailbox waits, state and IMAP session as they were."""

        def park() -> None:
            session.generation += 1  # no socket, no timer: only the database's return
            self._parked.add(session.mailbox_id)
            if not self._outage.down:  # it came back while this job was failing
                self._resume_parked()

        return park

    def _resume_parked(self) -> None:
        """The database answers again: every parked mailbox catches up now, not after backoff."""
        parked, self._parked = self._parked, set()
        for mailbox_id in sorted(parked):
            session = self._held.get(mailbox_id)
            if session is not None and not session.stopping:
                self._submit(session, self._job_resume)

    def _failure_handler(self, session: MailboxSession, exc: BaseException) -> Callable:
        """Close, record the reason on the mailbox, and schedule a jittered reconnect."""
        self._close(session)
        session.failures += 1
        RECONNECTS.inc()
        refused = isinstance(exc, ImapRefused)
        state = "error" if refused or session.failures >= 3 else "connecting"
        reauth = isinstance(exc, ReauthRequired)
        if reauth:
            state = "reauth_required"
            if not session.reauth_announced:
                session.reauth_announced = self._announce_reauth(session.mailbox_id)
        detail = (
            str(exc)
            if isinstance(exc, ImapRefused | ImapUnavailable)
            else (f"connection lost ({type(exc).__name__}); reconnecting")
        )
        self._record_state(session.mailbox_id, state, detail[:500])
        # Waiting for the owner to sign in again costs no server a thing: retry often, so
        # the mailbox catches up soon after the new sign-in.
        delay = REAUTH_RETRY_SECONDS if reauth else backoff_delay(session.failures)
        log.warning("mailbox %s: %s; retry in %.1fs", session.public_id, type(exc).__name__, delay)

        def schedule() -> None:
            session.generation += 1
            heapq.heappush(
                self._timers, (time.monotonic() + delay, session.mailbox_id, session.generation)
            )

        return schedule

    def _announce_reauth(self, mailbox_id: int) -> bool:
        """Ask the owner, once per spell, to sign in again (a content-free push)."""
        try:
            with session_scope(self._sessions) as db:
                announce_auth_required(db, mailbox_id=mailbox_id)
        except Exception:
            log.exception("could not ask for a new sign-in; will retry")
            return False
        return True

    # -- sync states ----------------------------------------------------------------------

    def _record_state(self, mailbox_id: int, state: str, detail: str | None = None) -> None:
        """What the apps and the admin will see; the latest state of a mailbox wins."""
        with self._states_lock:
            self._pending_states[mailbox_id] = (state, detail)
        self._wake()

    def _flush_states(self) -> None:
        """Write pending states in one transaction; flushes never overlap, so order holds."""
        with self._flush_lock:
            with self._states_lock:
                batch, self._pending_states = self._pending_states, {}
            if not batch:
                return
            try:
                with session_scope(self._sessions) as db:
                    for mailbox_id, (state, detail) in batch.items():
                        store.set_sync_state(
                            db=db, mailbox_id=mailbox_id, state=state, detail=detail
                        )
            except Exception as exc:
                if is_database_outage(exc):
                    self._outage.failed(exc)  # the heartbeat probes; flushes wait for it
                else:
                    log.exception("could not record sync states; will retry")
                with self._states_lock:
                    for mailbox_id, value in batch.items():
                        self._pending_states.setdefault(mailbox_id, value)

    def _worst_catch_up_age(self) -> float:
        """The gauge's value at scrape time: the stalest held mailbox, in seconds."""
        held = list(self._held.values())
        now = time.monotonic()
        return max((now - session.succeeded_at for session in held), default=0.0)

    # -- jobs (run in the pool) ---------------------------------------------------------

    def _select_and_catch_up(self, session: MailboxSession) -> None:
        """A fresh SELECT (its UIDVALIDITY and MODSEQ), then everything since our position."""
        selected = session.client.select_folder("INBOX")
        session.uidvalidity = int(selected[b"UIDVALIDITY"])
        session.caught_up_at = time.monotonic()
        catch_up(
            session.client,
            self._sessions,
            mailbox_id=session.mailbox_id,
            selected=selected,
            qresync=session.qresync,
        )
        _caught_up(session)

    def _job_connect(self, session: MailboxSession) -> None:
        client = connect(
            session.endpoint,
            ca_bundle=self._settings.ca_bundle,
            timeout=self._settings.imap_timeout_seconds,
        )
        session.client = client
        session.condstore, session.qresync = enable_change_tracking(client)
        session.notify = watch_every_folder(client)
        self._select_and_catch_up(session)
        session.folders_due = 0.0  # INBOX first; the other folders at the first timer
        session.reauth_announced = False
        self._record_state(session.mailbox_id, "ok")
        self._start_idle(session)
        session.failures = 0
        session.connected = True
        CONNECTED.inc()

    def _job_activity(self, session: MailboxSession) -> None:
        started = time.monotonic()
        # Raises on BYE and EOF; nothing decodable yet means a partial TLS record.
        lines = read_idle_responses(session.client)
        changes = [line for line in lines if not line.startswith(b"* OK")]
        overflow = any(OVERFLOW in line for line in lines)
        news, session.news = session.news, set()
        folder_news, session.folder_news = session.folder_news, False
        if not changes and not news and not folder_news and not overflow:
            return  # "* OK Still here": the server's keepalive, nothing to sync
        _text, late = session.client.idle_done()  # news that came while we said DONE
        kinds = news | {word for line in changes for word in line.split()[1:3]}
        kinds |= change_kinds(late)
        folder_news = (
            folder_news
            or overflow
            or folder_news_in_lines(changes)
            or folder_news_in_responses(late)
        )
        # INBOX first, still selected (no re-SELECT, only the searches the news call for):
        # a message moved out of it is then gone before another folder finds it.
        self._catch_up_selected(
            session,
            flags=b"FETCH" in kinds,
            expunges=bool(kinds & {b"EXPUNGE", b"VANISHED"}) or folder_news,
        )
        if overflow:  # RFC 5465 §5.8: notifications stopped until NOTIFY is set again
            session.notify = watch_every_folder(session.client)
        if folder_news and self._poll_folders(session):
            self._select_and_catch_up(session)  # another folder was selected
        self._start_idle(session)
        SYNC_LAG.observe(time.monotonic() - started)

    def _catch_up_selected(
        self, session: MailboxSession, *, flags: bool = True, expunges: bool = True
    ) -> None:
        """INBOX, still selected since its SELECT: what changed since our position."""
        catch_up(
            session.client,
            self._sessions,
            mailbox_id=session.mailbox_id,
            selected={b"UIDVALIDITY": session.uidvalidity},
            condstore=session.condstore,
            qresync=session.qresync,
            flags=flags,
            expunges=expunges,
        )
        _caught_up(session)

    def _job_resume(self, session: MailboxSession) -> None:
        """After a database outage: the same IMAP session (never in IDLE here) catches up."""
        if session.client is None:
            self._job_connect(session)
            return
        self._select_and_catch_up(session)
        session.folders_due = 0.0
        self._record_state(session.mailbox_id, "ok")
        self._start_idle(session)
        session.failures = 0
        if not session.connected:
            session.connected = True
            CONNECTED.inc()

    def _job_broken(self, session: MailboxSession) -> None:
        raise ImapUnavailable("connection broke; reconnecting")

    def _job_timer(self, session: MailboxSession) -> None:
        """The other folders' poll, and INBOX's renewal: RFC 2177 re-IDLE, with a full
        catch-up (fresh SELECT) should a notification have been lost."""
        _text, late = session.client.idle_done()
        now = time.monotonic()
        renew = now >= session.caught_up_at + IDLE_RENEW_SECONDS
        if not renew and change_kinds(late):
            # News that came as we said DONE will not be told again; INBOX is still
            # selected: its changes first, so a message moved out of it is known to have
            # left before another folder finds it (a move, not new mail).
            self._catch_up_selected(session)
        reselect = renew
        due = now >= session.folders_due or folder_news_in_responses(late)
        if due and self._poll_folders(session):
            reselect = True  # another folder was selected
        if reselect:
            self._select_and_catch_up(session)
        self._start_idle(session)
        if renew:
            IDLE_RENEWALS.inc()

    def _poll_folders(self, session: MailboxSession) -> list[str]:
        """List the folders, catch up the changed ones; when any was, INBOX is no longer
        selected. Also with NOTIFY: folders made, renamed or deleted are found here."""
        session.folders_due = time.monotonic() + self._settings.folder_poll_seconds
        return poll_folders(
            session.client,
            self._sessions,
            mailbox_id=session.mailbox_id,
            condstore=session.condstore,
            qresync=session.qresync,
        )

    def _start_idle(self, session: MailboxSession) -> None:
        session.news = take_change_notices(session.client)
        session.folder_news = take_folder_notices(session.client)
        session.client.idle()

    def _close(self, session: MailboxSession) -> None:
        client, session.client = session.client, None
        if client is None:
            return
        if session.connected:
            session.connected = False
            CONNECTED.dec()
        with contextlib.suppress(OSError, ProtocolError):
            client.shutdown()

    def _shutdown(self) -> None:
        for session in list(self._held.values()):
            session.stopping = True
            self._unregister(session)
        # Jobs in flight finish first (they are short IMAP commands): closing under them
        # would only turn a clean stop into errors.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._flush_states()
        for session in list(self._held.values()):
            self._close(session)
        try:
            with session_scope(self._sessions) as db:
                leases.release(db=db, worker=self.worker_id)
                leases.forget(db=db, worker=self.worker_id)
        except Exception:
            log.exception("could not release leases at shutdown")
        self._selector.close()
        log.info("sync worker %s stopped", self.worker_id)
