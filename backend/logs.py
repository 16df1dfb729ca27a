"""Logging for every process: one format, ids and codes only (never content), one line a record.

Values that reach a log line may come from outside (a username, a header, an exception's
message): a CR, LF or Unicode line separator in one would let its sender write a forged line
(a fake audit entry) into the log a SIEM reads. So every record's message is escaped when
the record is made, whichever handler formats it, and exception text is indented so that
no continuation line can pass for a record of its own.
"""

from __future__ import annotations

import logging
import re
from typing import Any

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


def configure_logging(level: int = logging.INFO) -> None:
    """The one logging set-up of every process (api under gunicorn, sync, push, serve, the
    CLI, all through `create_app`): escaped records, no IMAP traces, and plain lines on
    stderr for journald or a container log collector. Safe to call again."""
    protect_log_lines()
    # imapclient traces every IMAP exchange at DEBUG: envelopes, subjects, attachment
    # names. Health data must reach no log whatever level an operator picks (DESIGN.md),
    # so that logger never passes DEBUG on; errors and connection events still do.
    logging.getLogger("imapclient.imaplib").setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:  # configured already (by gunicorn, a test runner or an operator)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
