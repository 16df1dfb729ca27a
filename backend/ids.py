"""Opaque public identifiers: random, prefixed by kind, never a database integer or an address."""

import secrets


def new_id(prefix: str) -> str:
    """Return e.g. `mbx_3q2V...`: 96 random bits, URL-safe, readable kind prefix."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"
