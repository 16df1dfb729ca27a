"""Listing and delta-sync latency through gunicorn on a big cache, with the bare query's floor.

Creates its own PostgreSQL database, loads `--envelopes` cached envelopes over `--mailboxes`
mailboxes (COPY of pre-encrypted values), starts the api under gunicorn, and drives
GET /mailboxes/{id}/messages (first and deeper pages, following `next`) and
GET /sync?since=<state> from `--clients` concurrent clients. In the same run it times the
bare SQL of the same pages (`db_p50_ms`), and the api alone with one client (no queueing).
The main figures come from closed-loop clients that saturate the server; `paced` repeats
the run with the same clients pausing `--think-ms` on average between calls. Prints one
JSON line.

    .venv/bin/python -m bench.api_latency --envelopes 20000          # while developing
    .venv/bin/python -m bench.api_latency                            # 1,000,000 / 1,000
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg

from bench.gunicorn import free_port, start_gunicorn

ADMIN_URL = "postgresql://postgres@127.0.0.1/test"
PAGE = 50
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

PAGE_SQL = """
SELECT id, public_id, folder_id, sort_key, subject, sender, recipients, patient, seen,
       flagged, answered, has_attachments, size, mdn_requested, malformed
FROM messages
WHERE mailbox_id = %s AND folder_id = %s AND (sort_key, id) < (%s, %s)
ORDER BY sort_key DESC, id DESC
LIMIT %s
"""


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _setup(env: dict[str, str], mailboxes: int, token_users: int) -> dict[str, Any]:
    """Schema, users, mailboxes, INBOX folders, devices; access tokens for `token_users`."""
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
        devices = [
            Device(user_id=user.id, name="bench", platform="android")
            for user in users[:token_users]
        ]
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


def _load_envelopes(url: str, boxes: list[tuple[int, str, int]], sizes: list[int]) -> None:
    """COPY `total` envelopes spread evenly over the mailboxes, values encrypted like the app's."""
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
    columns = (
        "public_id, mailbox_id, folder_id, uid, sort_key, subject, sender, recipients, "
        "message_id_header, patient, seen, flagged, answered, has_attachments, size, "
        "mdn_requested, urgent, malformed, change_seq, created_at"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
            for (box_pk, _public, folder_pk), size in zip(boxes, sizes, strict=True):
                for n in range(size):
                    public_id = new_id("msg")
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


def _index_seek(url: str, box: tuple[int, str, int]) -> bool:
    """Does the deep-page query seek the listing index (no sort, no scan of skipped rows)?"""
    with psycopg.connect(url) as conn:
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN " + PAGE_SQL,
                (box[0], box[2], EPOCH + timedelta(days=30), 10**12, PAGE + 1),
            )
        )
    return "ix_messages_listing" in plan and "Sort" not in plan


def _bare_query_ms(
    url: str, boxes: list[tuple[int, str, int]], samples: int, sizes: list[int]
) -> list[float]:
    """The page query alone, one connection, prepared: the floor the api is compared with."""
    timings = []
    rng = random.Random(7)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for _ in range(samples):
            index = rng.randrange(len(boxes))
            box_pk, _public, folder_pk = boxes[index]
            depth = rng.randrange(sizes[index])
            after = EPOCH + timedelta(minutes=17 * depth + 1)
            started = time.perf_counter()
            cur.execute(PAGE_SQL, (box_pk, folder_pk, after, 10**12, PAGE + 1), prepare=True)
            cur.fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


class Driver:
    """One benchmark client: lists pages (following `next`) and polls /sync with its state.

    Plain keep-alive `http.client`: the load generator shares the CPUs with the server, so it
    must spend as little of them as it can.
    """

    def __init__(self, port: int, plan: dict[str, Any], seed: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.rng = random.Random(seed)
        self.plan = plan
        self.cursors: dict[int, str | None] = {}

    def _get(self, path: str, params: dict[str, Any], token: str) -> tuple[dict, float]:
        started = time.perf_counter()
        self.http.request(
            "GET", f"{path}?{urlencode(params)}", headers={"Authorization": f"Bearer {token}"}
        )
        response = self.http.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {payload[:200]!r}")
        return json.loads(payload), elapsed

    def one(self, states: dict[int, str]) -> tuple[str, float]:
        user = self.rng.randrange(len(self.plan["tokens"]))
        token = self.plan["tokens"][user]
        if self.rng.random() < 0.3 and user in states:
            page, elapsed = self._get("/api/v1/sync", {"since": states[user]}, token)
            states[user] = page["state"]
            return "sync", elapsed
        mailbox = self.plan["boxes"][user][1]
        params: dict[str, Any] = {"limit": PAGE}
        if self.cursors.get(user):
            params["cursor"] = self.cursors[user]
        page, elapsed = self._get(f"/api/v1/mailboxes/{mailbox}/messages", params, token)
        self.cursors[user] = page["next"]
        return "list", elapsed


def _walk_pages(port: int, plan: dict[str, Any], user: int, pages: int) -> float:
    """p50 of `pages` successive pages of one user's mailbox, restarting at the end."""
    driver = Driver(port, plan, seed=0)
    token, mailbox = plan["tokens"][user], plan["boxes"][user][1]
    timings, cursor = [], None
    for _ in range(pages):
        params: dict[str, Any] = {"limit": PAGE} | ({"cursor": cursor} if cursor else {})
        page, elapsed = driver._get(f"/api/v1/mailboxes/{mailbox}/messages", params, token)
        timings.append(elapsed)
        cursor = page["next"]
    return statistics.median(timings)


def _snapshot(base: str, token: str) -> str:
    """A phone's first sync: the full snapshot, page after page; returns the final state."""
    state = None
    with httpx.Client(base_url=base, timeout=60) as http:
        while True:
            params = {"since": state} if state else {}
            response = http.get(
                "/api/v1/sync", params=params, headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            page = response.json()
            state = page["state"]
            if not page["more"]:
                return state


def _drive(
    drivers: list[Driver], states: dict[int, str], requests: int, *, think_s: float
) -> tuple[list[tuple[str, float]], float]:
    """`requests` calls shared by the drivers, each on a thread of its own; (results, seconds).

    With `think_s` 0 the clients are closed-loop and saturate the server: latency is then
    mostly queueing. Otherwise each client pauses between calls for an exponentially
    distributed time of that mean, as people reading their mail do.
    """
    lock = threading.Lock()
    results: list[tuple[str, float]] = []
    remaining = [requests]

    def client(driver: Driver) -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            if think_s:
                time.sleep(driver.rng.expovariate(1 / think_s))
            outcome = driver.one(states)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=client, args=(d,)) for d in drivers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envelopes", type=int, default=1_000_000)
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--token-users", type=int, default=100)
    parser.add_argument(
        "--think-ms", type=float, default=1000.0, help="mean pause between a paced client's calls"
    )
    parser.add_argument("--paced-requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    # As deployed (infra/estafette.env.example): revocations are checked in Redis.
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    name = f"estafette_bench_api_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    port = free_port()
    env = {
        "ESTAFETTE_DATABASE_URL": url,
        "ESTAFETTE_SECRET_KEY": "bench-secret-key-bench-secret-key-bench",
        "ESTAFETTE_DATA_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ESTAFETTE_NIL": "bench",
        "ESTAFETTE_CA_BUNDLE": "system",
        "ESTAFETTE_BIND": f"127.0.0.1:{port}",
        "ESTAFETTE_WORKERS": str(args.workers),
        "ESTAFETTE_REDIS_URL": args.redis,
        "ESTAFETTE_VAR_DIR": f"/tmp/{name}",
    }
    server = None
    try:
        load_started = time.perf_counter()
        plan = _setup(env, args.mailboxes, args.token_users)
        sizes = _sizes(args.envelopes, args.mailboxes)
        _load_envelopes(url, plan["boxes"], sizes)
        load_s = time.perf_counter() - load_started
        server = start_gunicorn(env, port)
        base = f"http://127.0.0.1:{port}"

        seek = _index_seek(url, plan["boxes"][0])
        with ThreadPoolExecutor(8) as pool:  # every phone's first sync (also warms the workers)
            states = dict(enumerate(pool.map(lambda t: _snapshot(base, t), plan["tokens"])))

        lone = Driver(port, plan, seed=1)
        single = [lone.one(states)[1] for _ in range(300)]

        drivers = [Driver(port, plan, seed=100 + i) for i in range(args.clients)]
        results, elapsed = _drive(drivers, states, args.requests, think_s=0.0)
        paced_drivers = [Driver(port, plan, seed=500 + i) for i in range(args.clients)]
        paced, paced_elapsed = _drive(
            paced_drivers, states, args.paced_requests, think_s=args.think_ms / 1000
        )
        db_ms = _bare_query_ms(url, plan["boxes"], 500, sizes)
        # The same deep pages of the biggest mailbox and of one of 100, one client, no queue.
        big_small = [_walk_pages(port, plan, user, pages=40) for user in (0, 1)]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    latencies = [ms for _kind, ms in results]
    by_kind = {
        kind: round(statistics.median([ms for k, ms in results if k == kind]), 2)
        for kind in ("list", "sync")
        if any(k == kind for k, _ in results)
    }
    print(
        json.dumps(
            {
                "rps": round(len(latencies) / elapsed, 1),
                "p50_ms": round(statistics.median(latencies), 2),
                "p99_ms": round(_percentile(latencies, 0.99), 2),
                "db_p50_ms": round(statistics.median(db_ms), 3),
                "api_p50_one_client_ms": round(statistics.median(single), 2),
                "page_p50_ms_mailbox_of": {
                    str(sizes[0]): round(big_small[0], 2),
                    str(sizes[1]): round(big_small[1], 2),
                },
                "p50_by_call_ms": by_kind,
                "paced": {
                    "think_ms": args.think_ms,
                    "rps": round(len(paced) / paced_elapsed, 1),
                    "p50_ms": round(statistics.median(ms for _k, ms in paced), 2),
                    "p99_ms": round(_percentile([ms for _k, ms in paced], 0.99), 2),
                },
                "index_seek": seek,
                "envelopes": args.envelopes,
                "mailboxes": args.mailboxes,
                "clients": args.clients,
                "requests": len(latencies),
                "gunicorn_workers": args.workers,
                "redis": bool(args.redis),
                "load_s": round(load_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
