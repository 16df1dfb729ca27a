"""Audit trail at scale: verify a million-record hash chain, and search it by actor and time.

Creates its own PostgreSQL database, bulk-loads N records with correct chain hashes (COPY),
then times `verify_chain` (target < 60 s for 1,000,000) and the admin search by actor and
time window (p99 target < 100 ms). Measured in the same run, as floors/peers: reading
the same columns without hashing (verify's I/O floor), and the same searches with index
scans disabled (what the (actor, occurred_at, id) index saves). Prints one JSON line.

    .venv/bin/python -m bench.audit --records 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import psycopg
from sqlalchemy import select, text

from backend.audit.search import AuditQuery, search
from backend.audit.trail import CHAIN_COLUMNS, GENESIS, canonical_bytes, verify_chain
from backend.storage.database import make_engine, make_session_factory, upgrade_schema
from backend.storage.models import AuditRecord
from bench.scratch import ScratchDatabase

ACTIONS = ("message.read", "message.list", "attachment.download", "message.flag", "auth.refresh")
COLUMNS = (
    "id, occurred_at, actor, device, action, outcome, target_type, target, mailbox, "
    "source_ip, details, prev_hash, hash"
)


def _records(count: int, actors: int, start: datetime, span: timedelta, rng: random.Random):
    """Yield rows in chain order, each hashed exactly as AuditTrail.record would."""
    step = span / count
    prev = GENESIS
    for i in range(1, count + 1):
        actor = rng.randrange(actors)
        row = SimpleNamespace(
            id=i,
            occurred_at=start + step * i,
            actor=f"usr_bench{actor:06d}",
            device=f"dev_bench{actor:06d}",
            action=ACTIONS[i % len(ACTIONS)],
            outcome="ok",
            target_type="message",
            target=f"msg_{i:012d}",
            mailbox=f"mbx_bench{actor % 500:05d}",
            source_ip="10.0.0.1",
            details='{"folder":"INBOX"}' if i % 7 == 0 else None,
            prev_hash=prev,
            hash="",
        )
        row.hash = prev = hashlib.sha256(canonical_bytes(row)).hexdigest()
        yield row


def _load(url: str, count: int, actors: int, start: datetime, span: timedelta) -> float:
    rng = random.Random(7)
    began = time.perf_counter()
    last = None
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY audit_records ({COLUMNS}) FROM STDIN") as copy:
            for row in _records(count, actors, start, span, rng):
                copy.write_row(
                    (
                        row.id,
                        row.occurred_at.replace(tzinfo=None),
                        row.actor,
                        row.device,
                        row.action,
                        row.outcome,
                        row.target_type,
                        row.target,
                        row.mailbox,
                        row.source_ip,
                        row.details,
                        row.prev_hash,
                        row.hash,
                    )
                )
                last = row
        conn.execute(
            "UPDATE audit_chain_head SET last_id = %s, last_hash = %s WHERE id = 1",
            (last.id, last.hash),
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('audit_records', 'id'), %s)", (last.id,))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audit_records")
    return time.perf_counter() - began


def _read_floor(sessions) -> float:
    """Stream the same columns verify reads, same batches, without hashing."""
    began = time.perf_counter()
    with sessions() as db:
        after = 0
        while True:
            rows = db.execute(
                select(*CHAIN_COLUMNS)
                .where(AuditRecord.id > after)
                .order_by(AuditRecord.id)
                .limit(20000)
            ).all()
            if not rows:
                break
            after = rows[-1].id
    return time.perf_counter() - began


def _searches(sessions, queries: list[AuditQuery], *, seqscan: bool = False) -> list[float]:
    timings = []
    with sessions() as db:
        if seqscan:
            db.execute(text("SET enable_indexscan = off"))
            db.execute(text("SET enable_bitmapscan = off"))
            db.execute(text("SET enable_indexonlyscan = off"))
        for query in queries:
            began = time.perf_counter()
            _rows, after = search(db=db, query=query, limit=50)
            if after is not None:  # the second page too, as an admin scrolling would
                search(db=db, query=query, limit=50, after=after)
            timings.append((time.perf_counter() - began) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--actors", type=int, default=1_000)
    parser.add_argument("--searches", type=int, default=300)
    args = parser.parse_args()

    database = ScratchDatabase("audit")
    url = database.url
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
        end = datetime.now(UTC)
        span = timedelta(days=365)
        load_s = _load(url, args.records, args.actors, end - span, span)
        sessions = make_session_factory(engine)

        read_floor_s = _read_floor(sessions)
        began = time.perf_counter()
        with sessions() as db:
            result = verify_chain(db)
        verify_s = time.perf_counter() - began
        assert result.ok and result.records == args.records, result

        rng = random.Random(11)
        queries = []
        for _ in range(args.searches):
            since = end - span + timedelta(days=rng.uniform(0, 330))
            queries.append(
                AuditQuery(
                    actor=f"usr_bench{rng.randrange(args.actors):06d}",
                    since=since,
                    until=since + timedelta(days=30),
                )
            )
        _searches(sessions, queries[:20])  # warm the cache, as a running server would be
        timings = sorted(_searches(sessions, queries))
        seqscan = sorted(_searches(sessions, queries[:5], seqscan=True))
        print(
            json.dumps(
                {
                    "records": args.records,
                    "verify_s": round(verify_s, 2),
                    "search_p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
                    "search_p50_ms": round(statistics.median(timings), 2),
                    "verify_read_floor_s": round(read_floor_s, 2),
                    "search_without_index_p50_ms": round(statistics.median(seqscan), 1),
                    "load_s": round(load_s, 1),
                    "searches": len(timings),
                    "verify_target_s": 60,
                    "search_target_ms": 100,
                }
            )
        )
    finally:
        engine.dispose()
        database.drop()


if __name__ == "__main__":
    main()
