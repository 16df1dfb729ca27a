"""The API browser at /api/v1/docs: Swagger UI on the gateway's own OpenAPI document.

Its files come from the pinned `swagger-ui-dist` npm package in this folder
(`make api-browser` installs it from package-lock.json) and are served by the gateway
itself, under a Content-Security-Policy that lets the page load nothing from anywhere else
and run no inline script.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from mobile_api.errors import problem

HERE = Path(__file__).resolve().parent
DIST = HERE / "node_modules" / "swagger-ui-dist"
# The only files served: ours, and the three Swagger UI needs.
OURS = {"init.js"}
VENDORED = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

blp = Blueprint("api_browser", __name__, url_prefix="/api/v1/docs")


def _guarded(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def installed() -> bool:
    return all((DIST / name).is_file() for name in VENDORED)


def _not_installed() -> Response:
    return problem(
        404, "not_found", "Not found", "The API browser is not installed: run make api-browser"
    )


@blp.get("")
def page() -> Response:
    if not installed():
        return _guarded(_not_installed())
    return _guarded(send_from_directory(HERE, "index.html", mimetype="text/html"))


@blp.get("/assets/<name>")
def asset(name: str) -> Response:
    if name in OURS:
        return _guarded(send_from_directory(HERE, name))
    if name in VENDORED and installed():
        return _guarded(send_from_directory(DIST, name))
    return _guarded(
        _not_installed() if name in VENDORED else problem(404, "not_found", "Not found")
    )
