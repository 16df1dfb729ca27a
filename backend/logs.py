"""Logging for the long-running commands: one format, ids and codes only (never content)."""

import logging


def configure_logging(level: int = logging.INFO) -> None:
    """Plain lines on stderr for journald or a container log collector."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=False
    )


# imapclient traces every IMAP exchange at DEBUG: envelopes, subjects, attachment names.
# Health data must reach no log whatever level an operator picks (DESIGN.md), so that
# logger never passes DEBUG on. Errors and connection events (INFO) still come through.
logging.getLogger("imapclient.imaplib").setLevel(logging.INFO)
