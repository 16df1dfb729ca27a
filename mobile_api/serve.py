"""`serve`: the embedded gateway. gunicorn serves the api; sync and push run beside it.

gunicorn runs one worker process (threads for concurrency) and the sync worker and push
dispatcher run as threads inside it, so the embedded mode is one service to start. In
production they are separate processes (`sync`, `push`, gunicorn with N workers).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from mobile_api.context import Services

log = logging.getLogger("estafette.serve")


class _Background:
    """The sync worker, push dispatcher and audit checkpoint threads of the embedded mode."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sender = None

    def start(self) -> None:
        from backend.push.dispatcher import Dispatcher
        from backend.push.routing import create_senders
        from backend.sync.process import run_sync

        settings = self._services.settings
        self._sender = create_senders(settings)
        dispatcher = Dispatcher(
            self._services.sessions,
            self._sender,
            lease_seconds=settings.push_lease_seconds,
            previews=settings.push_previews,
            stale_seconds=settings.push_stale_seconds,
        )
        self._threads = [
            threading.Thread(
                target=run_sync,
                args=(self._services.sessions, settings, self._stop),
                name="sync",
                daemon=True,
            ),
            threading.Thread(target=dispatcher.run, args=(self._stop,), name="push", daemon=True),
        ]
        if self._services.audit.checkpoints is not None:
            checkpoints = self._services.audit.checkpoints
            self._threads.append(
                threading.Thread(
                    target=checkpoints.run, args=(self._stop,), name="audit", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._sender is not None:
            self._sender.close()


class _EmbeddedGunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app


def serve(app: Flask, *, host: str, port: int, threads: int) -> None:
    """Run until SIGTERM/SIGINT; background work stops cleanly and releases its leases."""
    background = _Background(app.extensions["estafette"])

    def post_worker_init(_worker: Any) -> None:
        background.start()

    def worker_exit(_server: Any, _worker: Any) -> None:
        background.stop()

    options = {
        "bind": f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 15,
        "post_worker_init": post_worker_init,
        # gunicorn 27 opens a control socket in $HOME by default; keep it with our state.
        "control_socket": str(app.extensions["estafette"].settings.var_dir / "gunicorn.ctl"),
        "worker_exit": worker_exit,
        # No query strings in access logs: cursors and tokens must never be logged.
        "accesslog": "-",
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
    }
    log.info("Estafette listening on http://%s:%d", host, port)
    _EmbeddedGunicorn(app, options).run()
