"""Logging for the long-running commands: one format, ids and codes only (never content)."""

import logging


def configure_logging(level: int = logging.INFO) -> None:
    """Plain lines on stderr for journald or a container log collector."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=False
    )
