"""The gateway serves the web client (web/app) at `/`, under a strict Content-Security-Policy."""

from __future__ import annotations

import gzip
import re

from mobile_api.web_client import APP_DIR

SHELL_BUDGET_BYTES = 150 * 1024


def _policy(response) -> dict[str, str]:
    header = response.headers["Content-Security-Policy"]
    return {d.split()[0]: d for d in (part.strip() for part in header.split(";")) if d}


def test_the_app_shell_is_served_at_the_root_with_a_strict_policy(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b'<script type="module" src="/app/main.js">' in response.data
    policy = _policy(response)
    assert policy["script-src"] == "script-src 'self'"  # no inline script, no other origin
    assert policy["default-src"] == "default-src 'self'"
    assert policy["object-src"] == "object-src 'none'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert not re.search(r"https?://", response.headers["Content-Security-Policy"])


def test_the_shell_has_no_inline_script(client) -> None:
    html = client.get("/").get_data(as_text=True)
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "on" + "click=" not in html


def test_the_service_worker_is_served_at_the_root_so_its_scope_is_the_whole_app(client) -> None:
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response.mimetype in {"text/javascript", "application/javascript"}
    assert response.headers["Service-Worker-Allowed"] == "/"


def test_the_manifest_makes_the_app_installable(client) -> None:
    response = client.get("/manifest.webmanifest")
    assert response.mimetype == "application/manifest+json"
    assert response.json["start_url"] == "/"
    assert response.json["display"] == "standalone"


def test_a_missing_asset_is_a_404_and_paths_cannot_leave_the_app_folder(client) -> None:
    assert client.get("/app/nothing-here.js").status_code == 404
    assert client.get("/app/../../README.md").status_code == 404
    assert client.get("/app/%2e%2e/%2e%2e/README.md").status_code == 404


def test_api_answers_keep_their_own_headers(client) -> None:
    response = client.get("/api/v1/mailboxes")
    assert response.headers["Cache-Control"] == "no-store"


def test_the_shell_s_javascript_fits_the_budget_compressed() -> None:
    """Every module the shell can load (its lazy screens too), gzip'd: at most 150 KB."""
    total = sum(len(gzip.compress(path.read_bytes(), 9)) for path in APP_DIR.glob("*.js"))
    assert 0 < total <= SHELL_BUDGET_BYTES
