"""`flask --app mobile_api directory import`: the ANS extraction, loaded whole or not at all."""

from __future__ import annotations

import http.server
import threading
import zipfile
from functools import partial
from pathlib import Path

from sqlalchemy import select

from backend.storage.models import AuditRecord, DirectoryEntry
from devtools.directory_extraction import TRICKY_DUPLICATES, TRICKY_ENTRIES, TRICKY_MALFORMED
from tests.directory.support import entry_count, extraction, import_file


def test_import_loads_every_entry_and_reports_malformed_and_duplicate_lines(
    app, services, tmp_path: Path
) -> None:
    result = import_file(app, extraction(tmp_path, 100))

    assert result.exit_code == 0, result.output
    assert entry_count(services) == 100 + TRICKY_ENTRIES
    assert f"{100 + TRICKY_ENTRIES} entries loaded" in result.output
    assert f"{TRICKY_DUPLICATES} duplicate addresses skipped" in result.output
    assert f"{TRICKY_MALFORMED} malformed lines" in result.output
    assert "malformed (column_count): 1" in result.output


def test_an_entry_keeps_its_names_profession_organisation_and_city(app, services, tmp_path):
    import_file(app, extraction(tmp_path, 0))

    with services.sessions() as db:
        entry = db.scalar(
            select(DirectoryEntry).where(
                DirectoryEntry.address == "jp.muller-lefevre@ch-emeraude.mssante.fr"
            )
        )
    assert (entry.kind, entry.last_name, entry.first_name) == (
        "PER",
        "Müller-Lefèvre",
        "Jean-Pierre",
    )
    assert entry.specialty == "Cardiologie et maladies vasculaires"
    assert entry.organisation == "CH Côte d'Émeraude"
    assert (entry.postcode, entry.city) == ("13005", "MARSEILLE")
    assert entry.national_id == "81000000002"


def test_a_new_import_replaces_the_previous_directory(app, services, tmp_path: Path) -> None:
    import_file(app, extraction(tmp_path, 150, name="monday.txt"))

    result = import_file(app, extraction(tmp_path, 40, seed=7, name="tuesday.txt"))

    assert result.exit_code == 0, result.output
    assert entry_count(services) == 40 + TRICKY_ENTRIES


def test_an_unreadable_source_leaves_the_directory_as_it_was(app, services, tmp_path) -> None:
    import_file(app, extraction(tmp_path, 30))

    result = import_file(app, tmp_path / "missing.txt")

    assert result.exit_code == 1
    assert "directory not updated" in result.output
    assert entry_count(services) == 30 + TRICKY_ENTRIES


def test_the_import_is_audited_with_its_counts(app, services, tmp_path: Path) -> None:
    import_file(app, extraction(tmp_path, 10))

    with services.sessions() as db:
        record = db.scalar(select(AuditRecord).where(AuditRecord.action == "directory.import"))
    assert record is not None
    assert record.actor == "cli"
    assert f'"entries":{10 + TRICKY_ENTRIES}' in record.details


def test_the_ans_zip_is_downloaded_from_a_url(app, services, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "Extraction_Correspondance_MSSante", "w") as archive:
        archive.write(
            extraction(tmp_path, 25), "Extraction_Correspondance_MSSante_202612040300.txt"
        )
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/Extraction_Correspondance_MSSante"
        result = import_file(app, url)
    finally:
        server.shutdown()
        server.server_close()

    assert result.exit_code == 0, result.output
    assert entry_count(services) == 25 + TRICKY_ENTRIES


def test_a_download_that_fails_changes_nothing(app, services, tmp_path: Path) -> None:
    import_file(app, extraction(tmp_path, 5))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "none")),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = import_file(app, f"http://127.0.0.1:{server.server_port}/nothing-here")
    finally:
        server.shutdown()
        server.server_close()

    assert result.exit_code == 1
    assert "HTTPStatusError" in result.output
    assert entry_count(services) == 5 + TRICKY_ENTRIES


def test_the_download_goes_through_the_configured_proxy(make_app, tmp_path) -> None:
    payload = extraction(tmp_path, 8).read_bytes()
    asked: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)  # a proxy is asked for the absolute URL
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        app = make_app(ESTAFETTE_OUTBOUND_PROXY=f"http://127.0.0.1:{proxy.server_port}")
        result = import_file(app, "http://annuaire.invalid/Extraction_Correspondance_MSSante")
    finally:
        proxy.shutdown()
        proxy.server_close()

    assert result.exit_code == 0, result.output
    assert asked == ["http://annuaire.invalid/Extraction_Correspondance_MSSante"]
    assert entry_count(app.extensions["estafette"]) == 8 + TRICKY_ENTRIES
