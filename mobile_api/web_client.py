"""The web client (web/app): the clinician's installable app, served by the gateway at `/`.

Plain ES modules, no build step: what is in web/app is what the browser runs. Every answer
carries a strict Content-Security-Policy: scripts and styles from this origin only, no
inline script, no third-party origin, and message HTML only inside a sandboxed iframe.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

APP_DIR = Path(__file__).resolve().parents[1] / "web" / "app"

# frame-src: the reader's iframe uses srcdoc (inherits this policy, sandboxed without
# scripts); img-src data:/blob: for the QR code and inline images, never a remote host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; frame-src 'self'; worker-src 'self'; "
    "manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

blp = Blueprint("web_client", __name__)


def _served(path: str, max_age: int = 0) -> Response:
    if not (APP_DIR / "index.html").is_file():
        abort(404)
    response = send_from_directory(APP_DIR, path, max_age=max_age)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # The service worker keeps the shell for offline use; the HTTP cache revalidates.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.get("/")
def index() -> Response:
    """The app shell."""
    return _served("index.html")


@blp.get("/sw.js")
def service_worker() -> Response:
    """The service worker, at the root so that its scope is the whole app."""
    response = _served("sw.js")
    response.headers["Service-Worker-Allowed"] = "/"
    return response


@blp.get("/manifest.webmanifest")
def manifest() -> Response:
    """The web app manifest (installable on a phone's home screen)."""
    response = _served("manifest.webmanifest")
    response.mimetype = "application/manifest+json"
    return response


@blp.get("/app/<path:path>")
def asset(path: str) -> Response:
    """The shell's modules, styles and icons."""
    return _served(path)
