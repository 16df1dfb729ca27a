"""Directory bench: import 600,000 generated entries into PostgreSQL, then time the
keystroke searches (prefixes of 1 to 4 letters, and full names) at the bare query and
through the api under gunicorn with concurrent clients. One JSON line out.

Targets (issue 18): import < 60 s; bare query p99 < 5 ms; api p99 < 20 ms with 10
clients. The run measures its own floors under the same load, so a busy machine shows
as a high floor rather than a slow search: at the bare query, a `SELECT 1` round trip on
the same session between searches; at the api, with the same generator, /healthz (no
session, no database) and GET /api/v1/mailboxes (the signed-in, audited path every call
shares, with a one-row query).

The api is driven by wrk (Debian's, compiled: a load generator in Python shares the two
cores and its GIL with the server and measures itself; bench/directory_paths.lua), one
connection per wrk thread:
- closed loop, `--clients` connections each sending its next search on the answer: the
  issue's "10 concurrent clients", which on two cores is a throughput test (the latency
  is the queue: clients / throughput);
- open loop, `--rate` searches per second in all (10 people typing 5 keys a second:
  50/s), each call's latency counted from when it was due, not from when it was sent, so
  a queue cannot hide (no coordinated omission).

    .venv/bin/python -m bench.directory [--entries 600000] [--clients 10] [--rate 50]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.gunicorn import free_port, start_gunicorn
from bench.scratch import ScratchDatabase, gateway_env
from bench.wrk import run_wrk
from devtools.directory_extraction import FIRST_NAMES, LAST_NAMES, write_extraction

SCRIPT = Path(__file__).resolve().parent / "directory_paths.lua"


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


def _bare(services: Any, queries: list[str]) -> tuple[list[float], list[float]]:
    """The search service itself (SQL and ranking), no HTTP: one session, as a request has.
    Between two searches, a `SELECT 1` on the same session: the round trip's floor."""
    from sqlalchemy import text

    from backend.directory import search as directory
    from backend.storage.models import User

    timings, floor = [], []
    with services.sessions() as db:
        user = db.query(User).filter_by(username="bench").one()
        for query in queries:
            started = time.perf_counter()
            directory.search(db=db, user=user, query=query, limit=10)
            timings.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            db.execute(text("SELECT 1")).scalar()
            floor.append((time.perf_counter() - started) * 1000)
    return timings, floor


def _paths_file(folder: Path, name: str, paths: list[str]) -> Path:
    path = folder / f"{name}.txt"
    path.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    return path


def _wrk(
    port: int,
    paths: Path,
    token: str,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
) -> dict[str, Any]:
    """One wrk run over `paths` (bench/directory_paths.lua); its JSON summary."""
    env = {"BENCH_PATHS": str(paths), "BENCH_TOKEN": token}
    return run_wrk(SCRIPT, port, env, connections=connections, seconds=seconds, rate=rate)


def _closed(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "p50_ms": found["p50_ms"],
        "p99_ms": found["p99_ms"],
        "max_ms": found["max_ms"],
        "rps": round(found["requests"] / found["seconds"]),
    }


def _open(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "p50_ms": found["open_p50_ms"],
        "p99_ms": found["open_p99_ms"],
        "calls": found["open_samples"],
    }


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=600_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=50, help="open loop: searches/s in all")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()

    database = ScratchDatabase("directory")
    url = database.url
    port = free_port()
    env = {
        **gateway_env(url),
        "ESTAFETTE_BIND": f"127.0.0.1:{port}",
        "ESTAFETTE_WORKERS": str(args.workers),
        "ESTAFETTE_VAR_DIR": f"/tmp/{database.name}",
        # The token is issued before the import, which may take minutes on a busy machine.
        "ESTAFETTE_ACCESS_TOKEN_MINUTES": "120",
    }
    load_at_start = os.getloadavg()
    server = None
    lists_folder = tempfile.TemporaryDirectory(prefix="estafette-bench-directory-paths-")
    lists = Path(lists_folder.name)
    try:
        services, token = _setup(env)
        with tempfile.TemporaryDirectory(prefix="estafette-bench-directory-") as folder:
            path = write_extraction(Path(folder) / "extraction.txt", args.entries, tricky=True)
            read_floor_s = _read_floor(path)
            imported = _import(services, path)
        print(f"import: {imported}", file=sys.stderr, flush=True)
        bare_queries = _queries(2000, seed=1)
        _bare(services, bare_queries[:200])  # warm the caches, as a running api has them
        bare, bare_floor = _bare(services, bare_queries)
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
        searches = _paths_file(
            lists,
            "searches",
            [
                "/api/v1/directory?" + urlencode({"q": q, "limit": 10})
                for q in _queries(4000, seed=2)
            ],
        )
        healthz = _paths_file(lists, "healthz", ["/healthz"])
        signed_in = _paths_file(lists, "signed_in", ["/api/v1/mailboxes"])
        run = functools.partial(_wrk, port, token=token, connections=args.clients)
        run(searches, seconds=3)  # warm every worker and its caches
        api = run(searches, seconds=args.seconds)
        floor = run(healthz, seconds=args.seconds / 2)
        floor_signed_in = run(signed_in, seconds=args.seconds / 2)
        api_open = run(searches, seconds=args.seconds, rate=args.rate)
        floor_open = run(healthz, seconds=args.seconds / 2, rate=args.rate)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        database.drop()
        lists_folder.cleanup()

    load_at_end = os.getloadavg()
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
                "bare_floor_select_1": _summary(bare_floor),
                "api": {**_closed(api), "clients": args.clients, "target_p99_ms": 20},
                "floor_healthz": _closed(floor),
                "floor_signed_in_mailboxes": _closed(floor_signed_in),
                "api_open_loop": {**_open(api_open), "rate_per_s": args.rate},
                "floor_open_loop_healthz": _open(floor_open),
                "generator": "wrk, one connection per thread (bench/directory_paths.lua)",
                "gunicorn_workers": args.workers,
                "cpus": os.cpu_count(),
                "load_average_start_end": [round(load_at_start[0], 2), round(load_at_end[0], 2)],
            }
        )
    )


if __name__ == "__main__":
    main()
