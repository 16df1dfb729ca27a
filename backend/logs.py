"""Logging for every process: one format, ids and codes only (never content), one line a record.

Values that reach a log line may come from outside (a username, a header, an exception's
message): a CR, LF or Unicode line separator in one would let its sender write a forged line
(a fake audit entry) into the log a SIEM reads. So every record's message is escaped when
the record is made, whichever handler formats it, and exception text is indented so that
no continuation line can pass for a record of its own.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
# What a SIEM indexes: the standard attributes it needs, under stable names.
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
_JSON_NAMES = {"asctime": "timestamp", "levelname": "level", "name": "logger", "process": "pid"}

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`\\n` for a line feed, `\\x1b` for escape: readable, and never a line break."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class _SafeFormatter(logging.Formatter):
    """Tracebacks keep their lines, each indented under the record that carries them."""

    def formatException(self, ei: Any) -> str:
        lines = super().formatException(ei).splitlines()
        return "\n".join("  | " + escape_controls(line) for line in lines)

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("  | " + escape_controls(line) for line in stack_info.splitlines())


class _Context(logging.Filter):
    """Adds which process wrote the record, and the request it served (nginx's
    X-Request-Id, validated: it is an outsider's value), to every record."""

    def __init__(self) -> None:
        super().__init__()
        self.process_name = _process_name()

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.process_name
        record.request_id = _request_id()
        return True


def _process_name() -> str:
    """api (gunicorn), sync, push, serve or cli: from the command that started us."""
    for word in sys.argv[1:]:
        if word in ("sync", "push", "serve"):
            return word
    return "api" if "gunicorn" in (sys.argv[0] if sys.argv else "") else "cli"


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _request_id() -> str | None:
    try:
        from flask import has_request_context, request
    except ImportError:  # pragma: no cover - Flask is always installed with the gateway
        return None
    if not has_request_context():
        return None
    value = request.headers.get("X-Request-Id", "")
    return value if _REQUEST_ID.match(value) else None


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        # Every value is a JSON string: a line break in one is written \n, never a new line.
        return JsonFormatter(
            _JSON_FIELDS,
            rename_fields=_JSON_NAMES,
            static_fields={},
            json_ensure_ascii=False,
        )
    return _SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


_installed = False


def protect_log_lines() -> None:
    """Escape control characters in every record's message, in this process, once."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def safe_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when the record is emitted
            return record
        escaped = escape_controls(message)
        if escaped != message or record.args:
            record.msg, record.args = escaped, None
        return record

    logging.setLogRecordFactory(safe_record)
    _installed = True


def configure_logging(level: int = logging.INFO, log_format: str | None = None) -> None:
    """The one logging set-up of every process (api under gunicorn, sync, push, serve, the
    CLI, all through `create_app`): escaped records, no IMAP traces, and lines on stderr
    for journald or a container log collector: plain text, or with
    `ESTAFETTE_LOG_FORMAT=json` one JSON object a line (timestamp, level, logger, pid,
    service, request_id, message) for a SIEM. Read from the environment itself: logging
    starts before the settings, whose warnings are records too. Safe to call again."""
    log_format = log_format or os.environ.get("ESTAFETTE_LOG_FORMAT") or "text"
    if log_format not in LOG_FORMATS:
        log_format = "text"  # load_settings refuses it, with the reason, right after
    protect_log_lines()
    # imapclient traces every IMAP exchange at DEBUG: envelopes, subjects, attachment
    # names. Health data must reach no log whatever level an operator picks (DESIGN.md),
    # so that logger never passes DEBUG on; errors and connection events still do.
    logging.getLogger("imapclient.imaplib").setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:  # configured already (by gunicorn, a test runner or an operator)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(_Context())
    root.addHandler(handler)
    root.setLevel(level)
