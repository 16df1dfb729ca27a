"""`/metrics` and `/healthz` of the `sync` and `push` processes, on a port of their own.

The api serves its metrics through Flask; a sync worker or a dispatcher has no HTTP
server, so its counters (mailboxes in IDLE, pushes by outcome) were seen by nobody, and
dashboards went blank exactly when mail stopped. With `ESTAFETTE_METRICS_PORT` set, each
serves prometheus-client's exposition and a health answer from a small threaded server,
on `ESTAFETTE_METRICS_ADDRESS` (loopback by default: a scraper on the host, or a
sidecar, reads it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

import backend.metrics  # noqa: F401  (registers every metric)
from backend.config import Settings

log = logging.getLogger("estafette.metrics")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:  # a scrape every 15 s is not news
        pass


def _app(healthy: Callable[[], bool]) -> Callable:
    metrics = make_wsgi_app()

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            ok = healthy()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [b'{"status":"ok"}' if ok else b'{"status":"stopping"}']
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def serve_metrics(settings: Settings, healthy: Callable[[], bool]) -> WSGIServer | None:
    """Start serving in a daemon thread, when a port is configured; the server, or None."""
    if settings.metrics_port is None:
        return None
    server = make_server(
        settings.metrics_address,
        settings.metrics_port,
        _app(healthy),
        server_class=_Server,
        handler_class=_Quiet,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port)
    return server
