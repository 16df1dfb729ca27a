"""Signed checkpoints anchor the trail outside the database: a database administrator who
rewrites a record and recomputes the whole hash chain is still caught, and anyone holding
the public key can check that a record is in the signed history."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text, update

from backend.audit.anchoring import public_key_of
from backend.audit.checkpoints import check_proof, public_pem, read_checkpoints
from backend.audit.merkle import Frontier, leaf_hash
from backend.audit.retention import purge_expired
from backend.audit.trail import Actor, chain_hash, verify_chain
from backend.config import ConfigError, load_settings
from backend.storage.models import AuditRecord, utcnow
from tests.audit.support import write_reads
from tests.support import body

EVERY = 5


@pytest.fixture
def anchored(make_app) -> Iterator[Any]:
    """A gateway that signs a checkpoint every 5 records (and at its first one)."""
    app = make_app(ESTAFETTE_AUDIT_CHECKPOINT_RECORDS=str(EVERY))
    yield app
    app.extensions["estafette"].engine.dispose()


def _services(app: Any) -> Any:
    return app.extensions["estafette"]


def _checkpoints(app: Any) -> list:
    return read_checkpoints(_services(app).settings.audit_checkpoint_file)


def _cli(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def _root_of_records(app: Any, size: int) -> bytes:
    with _services(app).sessions() as db:
        hashes = db.scalars(
            select(AuditRecord.hash).where(AuditRecord.id <= size).order_by(AuditRecord.id)
        ).all()
    frontier = Frontier()
    frontier.extend(leaf_hash(bytes.fromhex(h)) for h in hashes)
    return frontier.root()


def _rewrite_history_as_a_dba(app: Any, record_id: int, **changes: str) -> None:
    """Edit one row, then recompute every later hash and the head with UPDATEs: what anyone
    with write access to the table and the published algorithm can do."""
    records = AuditRecord.__table__
    with _services(app).engine.begin() as conn:
        conn.execute(update(records).where(records.c.id == record_id).values(**changes))
        prev = conn.execute(
            text(
                "SELECT COALESCE((SELECT hash FROM audit_records WHERE id = :id),"
                " (SELECT anchor_hash FROM audit_chain_head WHERE anchor_id = :id))"
            ),
            {"id": record_id - 1},
        ).scalar()
        rows = conn.execute(
            select(records).where(records.c.id >= record_id).order_by(records.c.id)
        ).all()
        for row in rows:
            fields = {**row._mapping, "prev_hash": prev}
            new_hash = chain_hash(SimpleNamespace(**fields))
            conn.execute(
                text("UPDATE audit_records SET prev_hash = :p, hash = :h WHERE id = :id"),
                {"p": prev, "h": new_hash, "id": row.id},
            )
            prev = new_hash
        conn.execute(text("UPDATE audit_chain_head SET last_hash = :h WHERE id = 1"), {"h": prev})


def test_a_checkpoint_is_signed_at_the_first_record_and_every_n_records(anchored) -> None:
    write_reads(_services(anchored), 2 * EVERY + 1)
    checkpoints = _checkpoints(anchored)
    assert [c.tree_size for c in checkpoints] == [1, 1 + EVERY, 1 + 2 * EVERY]
    public_key = public_key_of(_services(anchored).settings)
    for checkpoint in checkpoints:
        assert checkpoint.valid_under(public_key)
        assert checkpoint.root_hash == _root_of_records(anchored, checkpoint.tree_size)


def test_a_checkpoint_is_signed_when_the_last_one_is_m_seconds_old(anchored) -> None:
    services = _services(anchored)
    write_reads(services, 2)
    assert [c.tree_size for c in _checkpoints(anchored)] == [1]
    period = services.settings.audit_checkpoint_seconds
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_chain_head SET checkpoint_at = :t"),
            {"t": (utcnow() - timedelta(seconds=period + 1)).replace(tzinfo=None)},
        )
    write_reads(services, 1)
    assert [c.tree_size for c in _checkpoints(anchored)] == [1, 3]


def test_the_timer_command_covers_records_written_since_the_last_checkpoint(anchored) -> None:
    write_reads(_services(anchored), 3)
    result = _cli(anchored, "audit", "checkpoint")
    assert result.exit_code == 0, result.output
    assert [c.tree_size for c in _checkpoints(anchored)] == [1, 3]
    again = _cli(anchored, "audit", "checkpoint")
    assert again.exit_code == 0 and "no new records" in again.output
    assert len(_checkpoints(anchored)) == 2


def test_an_honest_trail_matches_its_checkpoints(anchored) -> None:
    write_reads(_services(anchored), 12)
    result = _cli(anchored, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "3 signed checkpoints match, up to record 11" in result.output


def test_a_rewritten_record_with_a_recomputed_chain_is_caught(anchored) -> None:
    services = _services(anchored)
    ids = write_reads(services, 12)
    _rewrite_history_as_a_dba(anchored, ids[3], actor="usr_someone_else")

    with services.sessions() as db:
        assert verify_chain(db).ok  # the plain hash chain is fooled...
    result = _cli(anchored, "audit", "verify")
    assert result.exit_code == 1  # ...the signed checkpoints are not
    assert "does NOT MATCH its checkpoints: records 2..6 differ" in result.output


def test_signed_records_deleted_from_the_end_are_caught(anchored) -> None:
    services = _services(anchored)
    write_reads(services, 11)
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE id > 8"))
        last = conn.execute(text("SELECT hash FROM audit_records WHERE id = 8")).scalar()
        conn.execute(
            text("UPDATE audit_chain_head SET last_id = 8, last_hash = :h WHERE id = 1"),
            {"h": last},
        )
    result = _cli(anchored, "audit", "verify")
    assert result.exit_code == 1
    assert "records 9..11 were signed and are gone" in result.output


def test_a_forged_checkpoint_line_is_caught(anchored) -> None:
    services = _services(anchored)
    write_reads(services, 3)
    genuine = json.loads(services.settings.audit_checkpoint_file.read_text().splitlines()[-1])
    forged = {**genuine, "tree_size": 2}
    with services.settings.audit_checkpoint_file.open("a") as sink:
        sink.write(json.dumps(forged) + "\n")
    result = _cli(anchored, "audit", "verify")
    assert result.exit_code == 1 and "checkpoint of size 2: bad signature" in result.output


def test_a_proof_checks_with_the_public_key_alone(anchored, tmp_path: Path) -> None:
    ids = write_reads(_services(anchored), 9)
    proved = _cli(anchored, "audit", "prove", str(ids[4]))
    assert proved.exit_code == 0, proved.output
    proof = json.loads(proved.output)
    assert (proof["leaf_index"], proof["tree_size"]) == (ids[4] - 1, 6)  # the latest head

    key_file = tmp_path / "audit.pub"
    key_file.write_text(_cli(anchored, "audit", "public-key").output)
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proved.output)
    checked = _cli(anchored, "audit", "check-proof", str(proof_file), "--public-key", str(key_file))
    assert checked.exit_code == 0 and "proof valid" in checked.output
    standalone = subprocess.run(
        [sys.executable, "-m", "backend.audit.checkpoints", proof_file, "--public-key", key_file],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert standalone.returncode == 0 and "proof valid" in standalone.stdout

    public_key = public_key_of(_services(anchored).settings)
    assert check_proof(proof, public_key)[0]
    other_record = {**proof, "record_hash": "00" * 32, "leaf_hash": leaf_hash(b"\0" * 32).hex()}
    assert check_proof(other_record, public_key) == (
        False,
        "the audit path does not lead to the signed root",
    )
    other_key = Ed25519PrivateKey.generate().public_key()
    assert check_proof(proof, other_key) == (False, "the tree head is not signed by this key")
    key_file.write_text(public_pem(other_key))
    refused = _cli(anchored, "audit", "check-proof", str(proof_file), "--public-key", str(key_file))
    assert refused.exit_code == 1 and "REJECTED" in refused.output


def test_a_record_newer_than_the_last_checkpoint_is_signed_before_it_is_proved(anchored) -> None:
    ids = write_reads(_services(anchored), 3)
    proved = _cli(anchored, "audit", "prove", str(ids[2]))
    assert proved.exit_code == 0, proved.output
    assert json.loads(proved.output)["tree_size"] == 3
    assert check_proof(json.loads(proved.output), public_key_of(_services(anchored).settings))[0]


def test_checkpoints_still_verify_and_prove_after_a_purge(anchored) -> None:
    services = _services(anchored)
    now = utcnow()
    for i, age in enumerate([400, 400, 399, 398, 397, 396, 395, 3, 2, 1]):
        services.audit.record(
            "message.read",
            actor=Actor("usr_reader"),
            target=f"msg_{i}",
            at=now - timedelta(days=age),
        )
    result = purge_expired(services.sessions, services.audit, retention_days=365)
    assert result.anchor_id == 7
    verified = _cli(anchored, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    proved = _cli(anchored, "audit", "prove", "9")
    assert proved.exit_code == 0, proved.output
    assert check_proof(json.loads(proved.output), public_key_of(services.settings))[0]

    _rewrite_history_as_a_dba(anchored, 8, target="msg_other")
    assert _cli(anchored, "audit", "verify").exit_code == 1


def test_checkpoints_also_go_to_syslog(make_app) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    port = receiver.getsockname()[1]
    app = make_app(ESTAFETTE_AUDIT_SYSLOG=f"127.0.0.1:{port}")
    try:
        write_reads(_services(app), 1)
        datagram = receiver.recv(4096).decode()
    finally:
        receiver.close()
        app.extensions["estafette"].engine.dispose()
    assert datagram.startswith("<")  # a syslog priority, then our tag and the JSON line
    line = json.loads(datagram.split("estafette-audit: ", 1)[1].rstrip("\x00"))
    assert line["tree_size"] == 1 and line == _checkpoints(app)[0].to_json()


def test_a_malformed_syslog_address_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ESTAFETTE_AUDIT_SYSLOG"):
        load_settings(
            {
                "ESTAFETTE_AUDIT_SYSLOG": "nowhere",
                "ESTAFETTE_CA_BUNDLE": "system",
                "ESTAFETTE_VAR_DIR": str(tmp_path),
            },
            env_file=tmp_path / "none",
        )


def test_verify_over_http_reports_the_checkpoints_too(app, client, services, admin) -> None:
    ids = write_reads(services, 5)
    assert _cli(app, "audit", "checkpoint").exit_code == 0
    honest = body(client.get("/api/v1/admin/audit/verify", headers=admin.headers))
    assert honest["ok"] is True and honest["checkpoints"]["ok"] is True
    assert honest["checkpoints"]["tree_size"] >= ids[-1]

    _rewrite_history_as_a_dba(app, ids[2], actor="usr_someone_else")
    caught = body(client.get("/api/v1/admin/audit/verify", headers=admin.headers))
    assert (caught["ok"], caught["first_bad"], caught["checkpoints"]["ok"]) == (False, None, False)
    assert "differ from the checkpoint" in caught["reason"]
