"""IDLE latency: from LMTP delivery to the (local) FCM receiving the push, against its floor.

Starts a real Dovecot with N mailboxes, a fresh PostgreSQL database, the local FCM server,
then `flask sync` (the worker under test) and `flask push` (the dispatcher) as processes.
In the same run it measures the floor: bare imapclient IDLE clients on a subset of the same
mailboxes, on the same server. Each sample is one message delivered over LMTP to a random
mailbox of that subset, then timed twice: until a bare client sees EXISTS (floor) and until
FCM receives the push (the whole gateway). Prints one JSON line:

    {"mailboxes", "floor_p50_ms", "p50_ms", "p99_ms", "rss_per_mailbox_kb", "connect_s"}

With `--folders N` (N > 1) each mailbox has N - 1 more folders besides INBOX, and each
sample lands in one of its N folders at random, as server-side rules file mail: INBOX
over LMTP (timed as above), another folder by IMAP APPEND, as Sieve's fileinto does. The
server offers NOTIFY (RFC 5465) unless `--no-notify` (its mailbox list index off), and
the line says which `watch` ran. It then adds `folder_p50_ms`/`folder_p99_ms` (APPEND to
push), `folder_floor_p50_ms`/`folder_floor_p99_ms` (APPEND until a bare NOTIFY client
sees the folder's STATUS: Dovecot's own notice delay; none without NOTIFY),
`folder_poll_s` (the listing period: the bound without NOTIFY) and
`poll_commands_per_min`: what the periodic listing costs the server (per mailbox and
period: DONE, one LIST-STATUS, IDLE; without LIST-STATUS, one STATUS per folder more).

`rss_per_mailbox_kb` is the worker's RSS once every mailbox is in IDLE, minus the RSS of
the same worker command idling with no mailbox, divided by N. `connect_s` runs from the
worker's start until every mailbox's sync state is `ok`.

    .venv/bin/python -m bench.idle_latency --mailboxes 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import func, select

from bench.scratch import ScratchDatabase, gateway_env

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "chu-bench.mssante.fr"
UID_BASE = 61000  # as root, mail spreads over several uids: inotify instances are per uid
SAMPLE_TIMEOUT = 15.0


def log(message: str) -> None:
    print(f"[idle_latency] {message}", file=sys.stderr, flush=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def message(subject: str, to: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Dr Bench <bench@ch-exemple.mssante.fr>"
    mail["To"] = to
    mail["Subject"] = subject
    mail.set_content("Corps du message.")
    return bytes(mail)


class Flask:
    """`flask --app mobile_api ...` processes with one environment; all killed at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "mobile_api", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            self.stop(process)


class FloorClients:
    """Bare imapclient sessions in IDLE, one selector thread: when did each see EXISTS."""

    def __init__(self, server, accounts: list[tuple[int, str, str]], *, notify: bool) -> None:
        from backend.mail.watching import watch_every_folder

        self.seen: dict[int, list[float]] = {index: [] for index, _a, _p in accounts}
        self.statuses: dict[tuple[int, str], list[float]] = {}
        self._selector = selectors.DefaultSelector()
        self._clients: list[IMAPClient] = []
        context = server.client_ssl_context()
        for index, address, password in accounts:
            client = IMAPClient(server.host, port=server.imaps_port, ssl_context=context)
            client.login(address, password)
            if notify and not watch_every_folder(client):
                raise RuntimeError("the server refused NOTIFY")
            client.select_folder("INBOX")
            client.idle()
            self._clients.append(client)
            self._selector.register(client.socket(), selectors.EVENT_READ, (index, client))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _events in self._selector.select(timeout=0.2):
                index, client = key.data
                responses = client.idle_check(timeout=0)
                now = time.time()
                if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                    self.seen[index].append(now)
                for response in responses:
                    if len(response) > 1 and response[0] == b"STATUS":
                        name = response[1]
                        name = name.decode() if isinstance(name, bytes) else str(name)
                        self.statuses.setdefault((index, name), []).append(now)

    def first_after(self, index: int, since: float) -> float | None:
        return next((t for t in self.seen[index] if t >= since), None)

    def first_status_after(self, index: int, folder: str, since: float) -> float | None:
        return next((t for t in self.statuses.get((index, folder), []) if t >= since), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.shutdown()


def setup_database(env: dict[str, str], accounts: list[tuple[int, str, str]], server) -> None:
    """Schema, one user per mailbox with one Android device; mailboxes use password auth."""
    os.environ.update(env)
    from backend.config import load_settings
    from backend.storage.database import make_engine, make_session_factory, upgrade_schema
    from backend.storage.encryption import set_data_key
    from backend.storage.models import Device, Mailbox, Membership, User

    settings = load_settings()
    set_data_key(settings.data_key)
    engine = make_engine(settings.database_url)
    upgrade_schema(engine)
    with make_session_factory(engine)() as db:
        for index, address, password in accounts:
            user = User(username=f"bench{index}", password_hash="!unusable")
            mailbox = Mailbox(
                address=address,
                kind="PER",
                imap_host=server.host,
                imap_port=server.imaps_port,
                imap_security="tls",
                imap_auth="password",
                imap_username=address,
                imap_secret=password,
            )
            db.add_all([user, mailbox])
            db.flush()
            db.add(Membership(mailbox_id=mailbox.id, user_id=user.id, role="owner"))
            db.add(
                Device(
                    user_id=user.id,
                    name="bench",
                    platform="android",
                    push_token=f"bench-{index}",
                    push_token_updated_at=func.now(),
                )
            )
        db.commit()
    engine.dispose()


def count_in_sync(database_url: str, extra_folders: list[str]) -> int:
    """Mailboxes in IDLE; with extra folders, only once their first folder poll is done."""
    from backend.storage.database import make_engine
    from backend.storage.models import Folder, Mailbox

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(Mailbox).where(Mailbox.sync_state == "ok")
            if extra_folders:
                polled = (
                    select(Folder.mailbox_id)
                    .where(Folder.name == extra_folders[-1], Folder.uidvalidity.is_not(None))
                    .scalar_subquery()
                )
                query = query.where(Mailbox.id.in_(polled))
            return conn.scalar(query)
    finally:
        engine.dispose()


def count_other_folders(database_url: str) -> int:
    from backend.storage.database import make_engine
    from backend.storage.models import Folder

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).where(Folder.name != "INBOX"))
    finally:
        engine.dispose()


def create_folders(server, accounts: list[tuple[int, str, str]], names: list[str]) -> None:
    """Each mailbox's other folders, made as a desktop client makes them (IMAP CREATE)."""
    from concurrent.futures import ThreadPoolExecutor

    def make(account: tuple[int, str, str]) -> None:
        _index, address, password = account
        with IMAPClient(
            server.host, port=server.imaps_port, ssl_context=server.client_ssl_context()
        ) as client:
            client.login(address, password)
            for name in names:
                client.create_folder(name)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(make, accounts))


def filed(server, address: str, password: str, folder: str, raw: bytes) -> float:
    """File a message into `folder` (IMAP APPEND, as Sieve's fileinto); when it was filed."""
    with IMAPClient(
        server.host, port=server.imaps_port, ssl_context=server.client_ssl_context()
    ) as client:
        client.login(address, password)
        at = time.time()
        client.append(folder, raw)
    return at


def capabilities(server, account: tuple[int, str, str]) -> tuple[bytes, ...]:
    _index, address, password = account
    with IMAPClient(
        server.host, port=server.imaps_port, ssl_context=server.client_ssl_context()
    ) as client:
        client.login(address, password)
        return client.capabilities()


def wait_for_push(fcm, token: str, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in fcm.requests:
            if request.token == token and request.received_at >= since:
                return request.received_at
        time.sleep(0.01)
    return None


def breakdown(database_url: str, timeline: list[tuple[float, float]]) -> str:
    """Where the time beyond the floor goes: worker (EXISTS to outbox row), dispatcher."""
    from backend.storage.database import make_engine
    from backend.storage.models import OutboxEvent

    engine = make_engine(database_url)
    with engine.connect() as conn:
        created = list(
            conn.scalars(
                select(OutboxEvent.created_at)
                .where(OutboxEvent.kind == "mail.new")
                .order_by(OutboxEvent.id)
            )
        )
    engine.dispose()
    if len(created) != len(timeline):
        return f"breakdown skipped: {len(created)} outbox rows for {len(timeline)} samples"
    worker = [(c.timestamp() - f) * 1000 for c, (f, _p) in zip(created, timeline, strict=True)]
    dispatch = [(p - c.timestamp()) * 1000 for c, (_f, p) in zip(created, timeline, strict=True)]
    return (
        f"beyond the floor, p50: worker {statistics.median(worker):.1f} ms, "
        f"dispatcher {statistics.median(dispatch):.1f} ms"
    )


def idle_baseline_rss(flask: Flask, work: Path, ca_bundle: str) -> int:
    """The worker command's RSS with nothing to watch: what is not per-mailbox cost."""
    from backend.storage.database import make_engine, upgrade_schema

    url = f"sqlite:///{work / 'empty.db'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    process = flask.start(
        "baseline-sync",
        "sync",
        env={"ESTAFETTE_DATABASE_URL": url, "ESTAFETTE_CA_BUNDLE": ca_bundle},
    )
    log_path = work / "baseline-sync.log"
    deadline = time.monotonic() + 60
    while b"starting" not in log_path.read_bytes():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the baseline worker did not start: " + log_path.read_text())
        time.sleep(0.1)
    time.sleep(2.0)  # let its first heartbeat and pool settle before reading RSS
    rss = rss_kb(process.pid)
    flask.stop(process)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--floor-clients", type=int, default=100)
    parser.add_argument("--pool-size", type=int, default=32)
    parser.add_argument("--max-gap-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--folders", type=int, default=1, help="folders per mailbox, INBOX too")
    parser.add_argument("--folder-poll-seconds", type=int, default=60)
    parser.add_argument(
        "--folder-share",
        type=float,
        default=None,
        help="share of samples filed outside INBOX (default: (N-1)/N, folders picked evenly)",
    )
    parser.add_argument(
        "--no-notify", action="store_true", help="a server without NOTIFY: folders polled"
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work directory (logs).")
    args = parser.parse_args()
    n = args.mailboxes
    rng = random.Random(args.seed)

    from devtools.dovecot import DovecotServer
    from devtools.fcm_server import FakeFcm

    work = Path(tempfile.mkdtemp(prefix="estafette-bench-idle-"))
    database = ScratchDatabase("idle")
    floor_count = min(n, args.floor_clients)
    server = DovecotServer(
        work / "dovecot",
        max_connections=n + floor_count + 100,
        idle_check_interval=30,
        notify=not args.no_notify,
    )
    fcm = FakeFcm().start()
    flask: Flask | None = None
    floor: FloorClients | None = None
    try:
        accounts = [(i, f"bench{i}@{DOMAIN}", uuid.uuid4().hex) for i in range(n)]
        spread = os.geteuid() == 0
        for index, address, password in accounts:
            server.add_user(address, password, uid=UID_BASE + index % 8 if spread else None)
        server.start()
        env = {
            **gateway_env(database.url, ca_bundle=str(server.ca_cert_path)),
            "ESTAFETTE_FCM_CREDENTIALS": str(fcm.write_service_account(work / "fcm.json")),
            "ESTAFETTE_FCM_ENDPOINT": fcm.base_url,
            "ESTAFETTE_FOLDER_POLL_SECONDS": str(args.folder_poll_seconds),
        }
        extra_folders = [f"Dossier {k}" for k in range(1, args.folders)]
        if extra_folders:
            create_folders(server, accounts, extra_folders)
        setup_database(env, accounts, server)
        flask = Flask(env, work)
        baseline = idle_baseline_rss(flask, work, str(server.ca_cert_path))
        flask.start("push", "push")

        started = time.monotonic()
        worker = flask.start("sync", "sync", "--pool-size", str(args.pool_size))
        while (in_sync := count_in_sync(env["ESTAFETTE_DATABASE_URL"], extra_folders)) < n:
            if worker.poll() is not None or time.monotonic() - started > 600:
                raise RuntimeError(f"only {in_sync}/{n} mailboxes connected; see {work}/sync.log")
            time.sleep(0.2)
        connect_s = time.monotonic() - started
        log(f"{n} mailboxes in IDLE after {connect_s:.1f}s; worker RSS {rss_kb(worker.pid)} kB")

        list_status = b"LIST-STATUS" in capabilities(server, accounts[0])
        watched = rng.sample(accounts, floor_count)
        floor = FloorClients(server, watched, notify=bool(extra_folders) and not args.no_notify)
        time.sleep(1.0)  # let the worker's RSS settle after its connection burst
        worker_rss = rss_kb(worker.pid)

        floor_ms: list[float] = []
        gateway_ms: list[float] = []
        timeline: list[tuple[float, float]] = []  # (floor saw EXISTS, FCM got the push)
        seen_requests = 0
        folder_ms: list[float] = []
        folder_floor_ms: list[float] = []
        for sample in range(args.samples):
            index, address, password = rng.choice(watched)
            token = f"bench-{index}"
            if args.folder_share is None or not extra_folders:
                folder = rng.choice(["INBOX", *extra_folders])
            else:  # fewer folder samples: without NOTIFY each waits up to a poll period
                folder = rng.choice(extra_folders) if rng.random() < args.folder_share else "INBOX"
            if folder != "INBOX":
                at = filed(server, address, password, folder, message(f"bench {sample}", address))
                pushed = wait_for_push(fcm, token, at, timeout=2 * args.folder_poll_seconds + 5)
                if pushed is None:
                    log(f"sample {sample}: no push for {folder}")
                else:
                    folder_ms.append((pushed - at) * 1000)
                    if (seen := floor.first_status_after(index, folder, at)) is not None:
                        folder_floor_ms.append((seen - at) * 1000)
                continue
            sent = time.time()
            server.deliver(address, message(f"bench {sample}", address))
            deadline = time.monotonic() + SAMPLE_TIMEOUT
            floor_at = pushed_at = None
            while (floor_at is None or pushed_at is None) and time.monotonic() < deadline:
                floor_at = floor_at or floor.first_after(index, sent)
                if pushed_at is None:
                    requests = fcm.requests
                    for request in requests[seen_requests:]:
                        if request.token == token and request.received_at >= sent:
                            pushed_at = request.received_at
                    seen_requests = len(requests) if pushed_at else seen_requests
                time.sleep(0.001)
            if floor_at is None or pushed_at is None:
                log(f"sample {sample}: timed out (floor={floor_at}, push={pushed_at})")
                continue
            floor_ms.append((floor_at - sent) * 1000)
            timeline.append((floor_at, pushed_at))
            gateway_ms.append((pushed_at - sent) * 1000)
            time.sleep(rng.uniform(0, args.max_gap_ms / 1000))
        if not gateway_ms:
            raise RuntimeError(f"no sample completed; see {work}")
        log(
            f"{len(gateway_ms)}/{args.samples} samples; floor p99 "
            f"{percentile(floor_ms, 0.99):.1f} ms; worker RSS {worker_rss} kB, "
            f"baseline {baseline} kB"
        )
        if len(timeline) == args.samples:
            log(breakdown(env["ESTAFETTE_DATABASE_URL"], timeline))
        result = {
            "mailboxes": n,
            "floor_p50_ms": round(statistics.median(floor_ms), 1),
            "p50_ms": round(statistics.median(gateway_ms), 1),
            "p99_ms": round(percentile(gateway_ms, 0.99), 1),
            "rss_per_mailbox_kb": round((worker_rss - baseline) / n, 1),
            "connect_s": round(connect_s, 1),
        }
        if extra_folders:
            per_minute = 60 / args.folder_poll_seconds
            per_listing = 3.0  # DONE, LIST-STATUS, IDLE
            if not list_status:  # and one STATUS per other folder
                per_listing += count_other_folders(env["ESTAFETTE_DATABASE_URL"]) / n

            def p(values: list[float], fraction: float) -> float | None:
                return round(percentile(values, fraction), 1) if values else None

            result.update(
                watch="poll" if args.no_notify else "notify",
                folders=args.folders,
                folder_samples=len(folder_ms),
                folder_floor_p50_ms=p(folder_floor_ms, 0.5),
                folder_floor_p99_ms=p(folder_floor_ms, 0.99),
                folder_p50_ms=p(folder_ms, 0.5),
                folder_p99_ms=p(folder_ms, 0.99),
                folder_poll_s=args.folder_poll_seconds,
                poll_commands_per_min=round(per_listing * n * per_minute),
            )
        print(json.dumps(result), flush=True)
    finally:
        if floor is not None:
            floor.close()
        if flask is not None:
            flask.stop_all()
        fcm.stop()
        server.stop()
        database.drop()
        if args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
