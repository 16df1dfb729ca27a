"""Production gunicorn settings for the Estafette api (`mobile_api.wsgi:app`).

Run behind nginx (infra/nginx/estafette.conf):
    gunicorn -c /opt/estafette/infra/gunicorn.conf.py mobile_api.wsgi:app
Everything that differs between hosts comes from the environment (see
infra/estafette.env.example); secrets never appear on the command line.
"""

import contextlib
import glob
import multiprocessing
import os
import tempfile

# prometheus-client's multiprocess mode: each worker writes its counters to files in this
# directory and /metrics, whichever worker answers, sums them all. The variable must be set
# before prometheus_client is first imported (by the app, preloaded below), and the
# directory must start empty: files of a previous run would be counted again. Under
# systemd it is in the unit's runtime directory (removed when the service stops).
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
    os.environ.get("RUNTIME_DIRECTORY") or tempfile.gettempdir(), f"estafette-metrics-{os.getpid()}"
)
os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)
for _stale in glob.glob(os.path.join(_metrics_dir, "*.db")):
    os.remove(_stale)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

from backend.config import load_settings  # noqa: E402  (after PROMETHEUS_MULTIPROC_DIR)
from backend.logs import configure_logging  # noqa: E402

wsgi_app = "mobile_api.wsgi:app"
proc_name = "estafette-api"

# Loopback by default: only nginx on this host talks to gunicorn. Bind a
# private address when nginx runs elsewhere.
bind = [addr.strip() for addr in os.environ.get("ESTAFETTE_BIND", "127.0.0.1:8000").split(",")]

# Api calls spend most of their time waiting on IMAP, SMTP or the database,
# so a few processes with threads serve many phones without the memory of
# one process per concurrent request.
workers = int(os.environ.get("ESTAFETTE_WORKERS") or multiprocessing.cpu_count() * 2 + 1)
worker_class = "gthread"
threads = 4

# With gthread this watches each worker's main loop, not single requests: a
# worker silent this long is hung and gets replaced. Requests themselves are
# bounded by nginx's proxy_read_timeout (300 s) and the app's IMAP/SMTP timeouts.
timeout = 60
graceful_timeout = 30
# Longer than nginx's upstream keepalive_timeout (60 s), so that it is nginx
# that closes an idle connection, never gunicorn under nginx's feet.
keepalive = 75

# Recycle workers now and then so a slow leak (TLS contexts, parsed mail)
# cannot grow forever; the jitter keeps them from all restarting at once.
# Not too often: a recycled worker drops its keep-alive connections and starts
# with cold caches (token signatures, statements, pool). At 2,000, a busy worker
# restarted every few seconds: /healthz under 10 clients fell from ~2,700 to
# ~1,500 calls/s with a p99 of 166-444 ms, against 12-19 ms at 20,000 or never
# (two cores; the pairs are in the README, in the directory section).
max_requests = 20000
max_requests_jitter = 2000

# Load the app once in the master, then fork: workers start fast, share
# memory copy-on-write, and an import error stops the service at start
# instead of in a crash loop of workers. The app must therefore not open
# database or Redis connections at import time (or must drop them after fork).
preload_app = True

# Which proxies may tell gunicorn that the request came over HTTPS
# (X-Forwarded-Proto): ESTAFETTE_TRUSTED_PROXIES, read through the app's own settings
# so that gunicorn and the app never disagree on it (unset or "none": trust nobody).
# A bad value stops gunicorn here with the settings' message.
configure_logging()  # before the settings, whose warnings are log records too
forwarded_allow_ips = ",".join(load_settings().trusted_proxies)

# The heartbeat file is touched constantly: keep it in RAM, not on a disk
# that may stall under load.
if os.path.isdir("/dev/shm"):  # noqa: S108 - gunicorn mkstemp()s its own file there
    worker_tmp_dir = "/dev/shm"  # noqa: S108

# gunicorn's control socket defaults to $HOME, which the systemd unit hides
# (ProtectHome); put it in the unit's runtime directory when there is one.
if os.environ.get("RUNTIME_DIRECTORY"):
    control_socket = os.path.join(os.environ["RUNTIME_DIRECTORY"], "gunicorn.ctl")

# Logs go to stdout/stderr, hence the journal. The access log uses %(U)s, the
# path alone, never %(r)s or %(q)s: query strings carry cursors and sync states,
# and must never be logged. No referrer either. The client address is the one
# nginx forwarded; X-Request-Id joins these lines to nginx's.
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = (
    '%({x-forwarded-for}i)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" %({x-request-id}i)s'
)


def child_exit(_server, worker) -> None:
    """A worker that exits (recycled by max_requests, or killed) leaves its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(_server) -> None:
    for path in glob.glob(os.path.join(_metrics_dir, "*.db")):
        os.remove(path)
    with contextlib.suppress(OSError):  # not empty: not only ours
        os.rmdir(_metrics_dir)
