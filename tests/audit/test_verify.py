"""Verify over HTTP and the command line: an honest trail passes; a row edited or deleted
directly in the database is named."""

from __future__ import annotations

from sqlalchemy import text

from tests.audit.support import write_reads
from tests.support import body, wait_until


def test_an_honest_trail_verifies_over_http(client, services, admin) -> None:
    write_reads(services, 5)
    response = client.get("/api/v1/admin/audit/verify", headers=admin.headers)
    assert response.status_code == 200
    result = body(response)
    assert result["ok"] is True and result["first_bad"] is None
    assert result["records"] >= 5 + 4  # plus the admin's own sign-in records


def test_an_edited_row_is_named_over_http_and_on_the_command_line(
    app, client, services, admin
) -> None:
    ids = write_reads(services, 5)
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET target = 'msg_other' WHERE id = :id"), {"id": ids[3]}
        )
    result = body(client.get("/api/v1/admin/audit/verify", headers=admin.headers))
    assert (result["ok"], result["first_bad"], result["reason"]) == (
        False,
        ids[3],
        "record altered",
    )
    cli = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert cli.exit_code == 1
    assert f"BROKEN at record {ids[3]}" in cli.output


def test_a_deleted_row_is_named_by_its_successor(app, client, services, admin) -> None:
    ids = write_reads(services, 5)
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": ids[1]})
    result = body(client.get("/api/v1/admin/audit/verify", headers=admin.headers))
    assert (result["ok"], result["first_bad"]) == (False, ids[2])
    assert result["reason"] == "previous record missing or altered"
    cli = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert cli.exit_code == 1 and f"record {ids[2]}" in cli.output


def test_deleting_the_newest_rows_is_detected(app, services) -> None:
    ids = write_reads(services, 3)
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": ids[-1]})
    cli = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert cli.exit_code == 1 and "latest records deleted" in cli.output


def test_verifying_is_itself_traced(client, services, admin) -> None:
    client.get("/api/v1/admin/audit/verify", headers=admin.headers)
    page = body(client.get("/api/v1/admin/audit?action=audit.verify", headers=admin.headers))
    [record] = page["items"]
    assert record["actor"] == admin.user_id and record["details"]["ok"] is True


def test_no_admin_route_edits_or_deletes_audit_records(app) -> None:
    for rule in app.url_map.iter_rules():
        if "/audit" in rule.rule:
            assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule


def test_verify_passes_while_the_gateway_keeps_writing(services) -> None:
    import threading

    from backend.audit.trail import verify_chain

    write_reads(services, 50)
    done, written = threading.Event(), []

    def keep_writing() -> None:
        while not done.is_set():
            written.append(write_reads(services, 1))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        wait_until(lambda: written, what="the writer to start")
        with services.sessions() as db:
            result = verify_chain(db, batch=5)  # many small batches: writes land in between
    finally:
        done.set()
        writer.join(timeout=30)
    assert result.ok, result
