"""The API browser at /api/v1/docs: Swagger UI on the live document, its files served by the
gateway itself, under a Content-Security-Policy that allows only them and no inline script."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from mobile_api import api_browser

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def installed() -> None:
    assert api_browser.installed(), "swagger-ui-dist is not installed: run make api-browser"


@pytest.fixture
def base_url(app, installed) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_the_page_and_its_files_are_served_under_a_strict_csp(client, installed) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = page.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    files = re.findall(r'(?:src|href)="(/api/v1/docs/assets/[^"]+)"', html)
    assert len(files) == 4
    for path in files:
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["Content-Security-Policy"] == csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_browser_files_are_served(client) -> None:
    for name in ("package.json", "..%2F__init__.py", "swagger-initializer.js", "index.html"):
        answer = client.get(f"/api/v1/docs/assets/{name}")
        assert answer.status_code == 404, name
        assert answer.content_type == "application/problem+json"


def test_the_browser_shows_every_call_and_loads_nothing_from_elsewhere(base_url) -> None:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on(
                "console",
                lambda message: (
                    violations.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            page.goto(f"{base_url}/api/v1/docs")
            page.wait_for_selector("#operations-auth-auth_login", timeout=30_000)
            assert page.locator(".opblock").count() > 40
        finally:
            browser.close()
    assert violations == []
    assert [url for url in requests if not url.startswith(base_url)] == []
    assert f"{base_url}/api/v1/openapi.json" in requests
