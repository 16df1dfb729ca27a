"""Directory bench: import 600,000 generated entries into PostgreSQL, then time the
keystroke searches (prefixes of 1 to 4 letters, and full names) at the bare query and
through the api under gunicorn with concurrent clients. One JSON line out.

Targets (issue 18): import < 60 s; bare query p99 < 5 ms; api p99 < 20 ms with 10
clients. The run also measures its own floor: /healthz through the same gunicorn under
the same load, so a busy machine shows as a high floor rather than a slow search.

    .venv/bin/python -m bench.directory [--entries 600000] [--clients 10]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.gunicorn import free_port, start_gunicorn
from devtools.directory_extraction import FIRST_NAMES, LAST_NAMES, write_extraction

ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 3),
        "p99_ms": round(_percentile(values, 0.99), 3),
        "max_ms": round(max(values), 3),
    }


def _queries(count: int, seed: int) -> list[str]:
    """What people type: 1 to 4 letters of a name, or a whole first and last name."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        name = rng.choice(LAST_NAMES + FIRST_NAMES).lower()
        if rng.random() < 0.8:
            result.append(name[: rng.randint(1, 4)])
        else:
            result.append(f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}")
    return result


def _setup(env: dict[str, str]) -> tuple[Any, str]:
    """Schema, one user with a mailbox in one of the generated domains, and a token."""
    os.environ.update(env)
    from mobile_api import create_app

    app = create_app()
    services = app.extensions["estafette"]
    from backend.storage.database import upgrade_schema
    from backend.storage.models import Device, Mailbox, Membership, User
    from mobile_api.auth.tokens import issue_session

    upgrade_schema(services.engine)
    with services.sessions() as db:
        user = User(username="bench", password_hash="x")
        mailbox = Mailbox(
            address="dr.bench@ch-lyon-3.mssante.fr",
            kind="PER",
            imap_host="imap.invalid",
            imap_port=993,
            imap_security="tls",
            imap_auth="password",
            sync_state="ok",
        )
        db.add_all([user, mailbox])
        db.flush()
        db.add(Membership(mailbox_id=mailbox.id, user_id=user.id, role="owner"))
        device = Device(user_id=user.id, name="bench", platform="android")
        db.add(device)
        db.flush()
        with app.test_request_context():
            token = issue_session(device, user)["access_token"]
        db.commit()
    return services, token


def _import(services: Any, path: Path) -> dict[str, Any]:
    from backend.directory import extraction, loading

    tally = extraction.Tally()
    started = time.perf_counter()
    with path.open(encoding="utf-8") as lines:
        report = loading.replace_directory(
            services.engine, extraction.read_entries(lines, tally), tally
        )
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "entries": report.entries,
        "malformed": report.malformed_total,
        "phases_s": report.phases,
    }


def _read_floor(path: Path) -> float:
    """The least any Python importer pays: read the file and split every line (seconds)."""
    started = time.perf_counter()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            line.split("|")
    return round(time.perf_counter() - started, 2)


def _bare(services: Any, queries: list[str]) -> list[float]:
    """The search service itself (SQL and ranking), no HTTP: one session, as a request has."""
    from backend.directory import search as directory
    from backend.storage.models import User

    timings = []
    with services.sessions() as db:
        user = db.query(User).filter_by(username="bench").one()
        for query in queries:
            started = time.perf_counter()
            directory.search(db=db, user=user, query=query, limit=10)
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def _drive(base: str, token: str, paths: list[tuple[str, dict]], clients: int) -> list[float]:
    """`clients` threads share the list of calls; each keeps one HTTP connection."""
    timings: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    work = iter(paths)

    def client() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        # A generous timeout: on a busy machine a slow answer is a figure, not an error.
        with httpx.Client(base_url=base, headers=headers, timeout=120.0) as http:
            while True:
                with lock:
                    item = next(work, None)
                if item is None:
                    return
                path, params = item
                started = time.perf_counter()
                response = http.get(path, params=params)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    with lock:
                        failures.append(f"{path} answered {response.status_code}")
                    return
                with lock:
                    timings.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} calls failed, first: {failures[0]}")
    return timings


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=600_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()

    name = f"estafette_bench_directory_{uuid.uuid4().hex[:6]}"
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
        "ESTAFETTE_VAR_DIR": f"/tmp/{name}",
        # The token is issued before the import, which may take minutes on a busy machine.
        "ESTAFETTE_ACCESS_TOKEN_MINUTES": "120",
    }
    server = None
    try:
        services, token = _setup(env)
        with tempfile.TemporaryDirectory(prefix="estafette-bench-directory-") as folder:
            path = write_extraction(Path(folder) / "extraction.txt", args.entries, tricky=True)
            read_floor_s = _read_floor(path)
            imported = _import(services, path)
        print(f"import: {imported}", file=sys.stderr, flush=True)
        bare_queries = _queries(2000, seed=1)
        _bare(services, bare_queries[:200])  # warm the caches, as a running api has them
        bare = _bare(services, bare_queries)
        short = [q for q in bare_queries if " " not in q]
        bare_by_kind = {
            "prefix_1_to_4": _summary(
                [ms for q, ms in zip(bare_queries, bare, strict=True) if q in short]
            ),
            "full_name": _summary(
                [ms for q, ms in zip(bare_queries, bare, strict=True) if q not in short]
            ),
        }
        services.engine.dispose()
        server = start_gunicorn(env, port)
        base = f"http://127.0.0.1:{port}"
        api_queries = _queries(args.requests, seed=2)
        calls = [("/api/v1/directory", {"q": q, "limit": 10}) for q in api_queries]
        _drive(base, token, calls[:300], args.clients)  # warm every worker
        api = _drive(base, token, calls, args.clients)
        floor = _drive(base, token, [("/healthz", {})] * args.requests, args.clients)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    print(
        json.dumps(
            {
                "bench": "directory",
                "entries": imported["entries"],
                "import_s": imported["seconds"],
                "import_target_s": 60,
                "import_floor_read_split_s": read_floor_s,
                "import_phases_s": imported["phases_s"],
                "bare_query": {**_summary(bare), **bare_by_kind, "target_p99_ms": 5},
                "api": {**_summary(api), "clients": args.clients, "target_p99_ms": 20},
                "floor_healthz": _summary(floor),
                "requests": len(api),
                "gunicorn_workers": args.workers,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
