"""The hot read calls through gunicorn on a big cache, against Flask's own floor.

Creates its own PostgreSQL database, loads `--envelopes` cached envelopes over `--mailboxes`
mailboxes (COPY of values sealed like the app's), signs in one device per mailbox, puts a
few bodies in the body cache, and drives the api under gunicorn with `wrk` (Debian's, a
compiled load generator; bench/api_mix.lua): a mixed load of GET /mailboxes/{id}/messages
following `next` (40%), GET /sync following its states (40%) and GET /messages/{id} with a
cached body (20%), picked at random among all the devices.

The floor is measured in the same run, with the same generator and script: a minimal Flask
app (bench/floor_app.py) under the same gunicorn configuration, answering every call with
a constant page of 50 envelopes as JSON, with no database and no auth. The machine is
shared, so absolute figures are noisy: the ratios to the floor are what count.

- `rps`: closed loop, `--connections` connections saturating the server;
- `p50_one_client_ms`: one connection, one call at a time (no queueing);
- `open_loop_p99_ms`: constant arrival rate of 0.35 x `floor_rps`, spread over
  `--open-connections` connections each sending at fixed intervals; latency counted from
  each call's scheduled time (wrk's `delay()`; the wrk2 method, wrk2 not being in Debian).

Afterwards the audit trail must verify, with exactly one record per audited call that the
server answered (counted from gunicorn's access log). Prints one JSON line.

    .venv/bin/python -m bench.api_latency --envelopes 20000          # while developing
    .venv/bin/python -m bench.api_latency                            # 1,000,000 / 1,000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.gunicorn import ROOT, free_port, start_gunicorn
from bench.scratch import ScratchDatabase, gateway_env
from bench.wrk import run_wrk

PAGE = 50
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
CACHED_BODIES = 4  # per mailbox: the newest messages, opened by the "get" calls
SCRIPT = ROOT / "bench" / "api_mix.lua"
# The calls the load makes, by the audit action of their main record.
AUDITED = {
    "mailbox.list": re.compile(r'"GET /api/v1/mailboxes/[^/ ]+/messages '),
    "sync.read": re.compile(r'"GET /api/v1/sync '),
    "message.read": re.compile(r'"GET /api/v1/messages/[^/ ]+ '),
}

RAW_BODY = (
    b"From: Dr Exp <exp@ch.mssante.fr>\r\nTo: dr@chu.mssante.fr\r\n"
    b"Subject: Compte rendu d'hospitalisation\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <bench@ch.mssante.fr>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    + b"Patient vu en consultation ce jour. Examen clinique sans particularite.\r\n" * 20
    + b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>"
    + b"Patient vu en consultation ce jour. Examen clinique sans particularite.<br>" * 20
    + b"</p>\r\n--b--\r\n"
)


def _setup(env: dict[str, str], mailboxes: int) -> dict[str, Any]:
    """Schema, users, mailboxes, INBOX folders, one signed-in device (its token) per user."""
    os.environ.update(env)
    from mobile_api import create_app

    app = create_app()
    services = app.extensions["estafette"]
    from backend.storage.database import upgrade_schema
    from backend.storage.models import Device, Folder, Mailbox, Membership, User
    from mobile_api.auth.tokens import issue_session

    upgrade_schema(services.engine)
    with services.sessions() as db:
        users = [User(username=f"bench{i}", password_hash="x") for i in range(mailboxes)]
        boxes = [
            Mailbox(
                address=f"dr.bench{i}@chu-bench.mssante.fr",
                kind="PER",
                imap_host="imap.invalid",
                imap_port=993,
                imap_security="tls",
                imap_auth="password",
                sync_state="ok",
            )
            for i in range(mailboxes)
        ]
        db.add_all(users + boxes)
        db.flush()
        db.add_all(
            Membership(mailbox_id=box.id, user_id=user.id, role="owner")
            for user, box in zip(users, boxes, strict=True)
        )
        folders = [Folder(mailbox_id=box.id, name="INBOX", role="inbox") for box in boxes]
        db.add_all(folders)
        devices = [Device(user_id=user.id, name="bench", platform="android") for user in users]
        db.add_all(devices)
        db.flush()
        with app.test_request_context():
            tokens = [
                issue_session(device, user)["access_token"]
                for device, user in zip(devices, users, strict=False)
            ]
        plan = {
            "boxes": [
                (box.id, box.public_id, folder.id)
                for box, folder in zip(boxes, folders, strict=True)
            ],
            "tokens": tokens,
            "users": [user.public_id for user in users],
        }
        db.commit()
    services.engine.dispose()
    return plan


def _sizes(total: int, mailboxes: int) -> list[int]:
    """How many envelopes each mailbox gets: one big (10% of all), one of 100, the rest even."""
    big, small = total // 10, 100
    rest = total - big - small
    even = [
        rest // (mailboxes - 2) + (1 if i < rest % (mailboxes - 2) else 0)
        for i in range(mailboxes - 2)
    ]
    return [big, small, *even]


def _load_envelopes(
    url: str, boxes: list[tuple[int, str, int]], sizes: list[int]
) -> list[list[str]]:
    """COPY the envelopes, values sealed like the app's; the newest ids of each mailbox."""
    from backend.ids import new_id
    from backend.storage.encryption import encrypt, row_context

    def plain(value: Any) -> bytes:
        return value.encode() if isinstance(value, str) else json.dumps(value).encode()

    # A pool of distinct values, each sealed for its row (column and public id bound).
    columns_sealed = (
        "messages.subject",
        "messages.sender",
        "messages.recipients",
        "messages.message_id",
        "messages.patient",
    )
    pool = [
        (
            plain(f"XDM/1.0/DDM+Compte rendu d'hospitalisation {i}"),
            plain({"name": f"Dr Exp {i}", "address": f"exp{i}@ch.mssante.fr"}),
            plain({"to": [{"name": None, "address": "dr@chu.mssante.fr"}], "cc": []}),
            plain(f"<{i}@ch.mssante.fr>"),
            plain({"ins": f"1{i:012d}", "name": "DUPONT Jeanne", "birth_date": "1950-01-01"}),
        )
        for i in range(256)
    ]
    created = datetime.now(UTC)
    newest: list[list[str]] = []
    columns = (
        "public_id, mailbox_id, folder_id, uid, sort_key, subject, sender, recipients, "
        "message_id_header, patient, seen, flagged, answered, has_attachments, size, "
        "mdn_requested, urgent, malformed, change_seq, created_at"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
            for (box_pk, _public, folder_pk), size in zip(boxes, sizes, strict=True):
                newest.append([])
                for n in range(size):
                    public_id = new_id("msg")
                    if n >= size - CACHED_BODIES:
                        newest[-1].append(public_id)
                    subject, sender, recipients, message_id, patient = (
                        encrypt(value, row_context(column, public_id))
                        for value, column in zip(pool[n % 256], columns_sealed, strict=True)
                    )
                    copy.write_row(
                        (
                            public_id,
                            box_pk,
                            folder_pk,
                            n + 1,
                            EPOCH + timedelta(minutes=17 * n),
                            subject,
                            sender,
                            recipients,
                            message_id,
                            patient,
                            n % 3 != 0,
                            n % 11 == 0,
                            False,
                            n % 4 == 0,
                            20_000 + n,
                            False,
                            False,
                            False,
                            n // 200 + 1,  # stored in batches, like the sync does
                            created,
                        )
                    )
        cur.execute("ANALYZE")
        conn.commit()
    return newest


def _write_plan(
    path: Path, plan: dict[str, Any], sizes: list[int], newest: list[list[str]]
) -> None:
    """The devices for the wrk script, each with a sync state one batch of mail behind.

    The loader numbers changes in batches of 200 (`change_seq`), so a state at the head
    minus one brings the last 200 envelopes: a tablet catching up on a shift's mail.
    """
    from mobile_api.delta_sync.routes import encode_state

    lines = []
    for (_pk, mailbox, _folder), size, token, user, ids in zip(
        plan["boxes"], sizes, plan["tokens"], plan["users"], newest, strict=True
    ):
        head = (size - 1) // 200 + 1
        state = encode_state(user, {mailbox: head - 1})
        lines.append(f"{token}\t{mailbox}\t{state}\t{','.join(ids)}")
    path.write_text("\n".join(lines) + "\n")


def _cache_bodies(var_dir: str, newest: list[list[str]]) -> None:
    """The bodies the "get" calls open, in the api's body cache (sealed with the data key)."""
    from backend.reading.cache import BodyCache

    class Filling(BodyCache):
        def purge(self) -> int:  # each put would rescan the whole directory: quadratic
            return 0

    cache = Filling(Path(var_dir) / "body-cache")
    for ids in newest:
        for public_id in ids:
            cache.put(public_id, RAW_BODY)


def _wrk(
    port: int,
    plan_file: Path,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
) -> dict[str, Any]:
    """One wrk run of the mixed load; failed calls are counted, not fatal."""
    return run_wrk(
        SCRIPT,
        port,
        {"BENCH_PLAN": str(plan_file)},
        connections=connections,
        seconds=seconds,
        rate=rate,
        errors_fail=False,
    )


def _measure(
    port: int, plan_file: Path, args: argparse.Namespace, rate: float | None
) -> dict[str, Any]:
    """Closed loop (throughput), one client (latency alone), then open loop at `rate`."""
    _wrk(port, plan_file, connections=args.connections, seconds=args.warmup)
    closed = _wrk(port, plan_file, connections=args.connections, seconds=args.seconds)
    one = _wrk(port, plan_file, connections=1, seconds=args.seconds)
    found = {
        "rps": closed["requests"] / closed["seconds"],
        "p50_one_client_ms": one["p50_ms"],
        "closed": closed,
        "one": one,
    }
    if rate is not None:
        found["open"] = _wrk(
            port, plan_file, connections=args.open_connections, seconds=args.seconds, rate=rate
        )
    return found


def _audit_check(url: str, access_log: Path) -> dict[str, Any]:
    """Does the trail verify, with one main record per audited call the server answered?"""
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from backend.audit.trail import verify_chain
    from backend.storage.models import AuditRecord

    answered = dict.fromkeys(AUDITED, 0)
    for line in access_log.read_text().splitlines():
        for action, pattern in AUDITED.items():
            if pattern.search(line):
                answered[action] += 1
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with Session(engine) as db:
        verdict = verify_chain(db)
        recorded = dict(
            db.execute(
                select(AuditRecord.action, func.count())
                .where(AuditRecord.action.in_(AUDITED))
                .group_by(AuditRecord.action)
            ).all()
        )
    engine.dispose()
    return {
        "chain_ok": verdict.ok,
        "records": verdict.records,
        "one_per_call": all(recorded.get(a, 0) == n for a, n in answered.items()),
        "calls": answered,
    }


def _stop(server: subprocess.Popen) -> None:
    """Quick shutdown (SIGINT): every measured call has been answered by then."""
    server.send_signal(signal.SIGINT)
    server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envelopes", type=int, default=1_000_000)
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=12, help="closed-loop clients")
    parser.add_argument("--open-connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0, help="each measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--open-fraction", type=float, default=0.35, help="of floor_rps")
    # As deployed (infra/estafette.env.example): revocations are checked in Redis.
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    database = ScratchDatabase("api")
    url = database.url
    scratch = Path(tempfile.mkdtemp(prefix="estafette-bench-api-"))
    env = {
        **gateway_env(url),
        "ESTAFETTE_WORKERS": str(args.workers),
        "ESTAFETTE_REDIS_URL": args.redis,
        "ESTAFETTE_VAR_DIR": str(scratch / "var"),
        # The tokens are made once, before the runs: they must outlast them.
        "ESTAFETTE_ACCESS_TOKEN_MINUTES": "120",
    }
    plan_file, access_log = scratch / "devices.tsv", scratch / "access.log"
    server = None
    try:
        load_started = time.perf_counter()
        plan = _setup(env, args.mailboxes)
        sizes = _sizes(args.envelopes, args.mailboxes)
        newest = _load_envelopes(url, plan["boxes"], sizes)
        _write_plan(plan_file, plan, sizes, newest)
        load_s = time.perf_counter() - load_started

        port = free_port()
        server = start_gunicorn(
            env | {"ESTAFETTE_BIND": f"127.0.0.1:{port}"}, port, app="bench.floor_app:app"
        )
        floor = _measure(port, plan_file, args, rate=None)
        _stop(server)

        _cache_bodies(env["ESTAFETTE_VAR_DIR"], newest)  # fresh: the cache keeps 15 minutes
        port = free_port()
        server = start_gunicorn(
            env | {"ESTAFETTE_BIND": f"127.0.0.1:{port}"}, port, access_log=access_log
        )
        rate = args.open_fraction * floor["rps"]
        api = _measure(port, plan_file, args, rate=rate)
        _stop(server)
        server = None
        audit = _audit_check(url, access_log)
    finally:
        if server is not None:
            _stop(server)
        database.drop()
        shutil.rmtree(scratch, ignore_errors=True)

    failed = sum(run["non200"] + run["socket_errors"] for run in (api["closed"], api["one"]))
    failed += api["open"]["non200"] + api["open"]["socket_errors"]
    print(
        json.dumps(
            {
                "floor_rps": round(floor["rps"], 1),
                "floor_p50_one_client_ms": round(floor["p50_one_client_ms"], 3),
                "rps": round(api["rps"], 1),
                "p50_one_client_ms": round(api["p50_one_client_ms"], 3),
                "open_loop_p99_ms": api["open"]["open_p99_ms"],
                "rps_ratio": round(api["rps"] / floor["rps"], 3),
                "p50_ratio": round(api["p50_one_client_ms"] / floor["p50_one_client_ms"], 2),
                "open_loop_rps": round(rate, 1),
                "open_loop_p50_ms": api["open"]["open_p50_ms"],
                "closed_p99_ms": api["closed"]["p99_ms"],
                "calls": api["closed"]["calls"],
                "failed_calls": failed,
                "audit": audit,
                "envelopes": args.envelopes,
                "mailboxes": args.mailboxes,
                "devices": len(plan["tokens"]),
                "connections": args.connections,
                "gunicorn_workers": args.workers,
                "seconds_per_run": args.seconds,
                "redis": bool(args.redis),
                "load_s": round(load_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
