"""Brute-force defence on the sign-in calls, with flask-limiter, per address and per account.

Counts are shared by every api process: in Redis when `ESTAFETTE_REDIS_URL` is set (the
database stands in while Redis is away), else in the database
(`backend.storage.rate_limits`). Independently of these rates, five wrong codes lock the
account in the database (`backend.accounts.users`).

A password guess is limited per account *and* address, so that an attacker who knows a
username cannot lock its owner out from another address; the account alone has a much
larger, slower ladder against guesses spread over many addresses. Keys hold a keyed hash of
the account, never the username, so neither Redis nor a limiter log line can name anyone.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, g, request
from flask_limiter import Limiter
from sqlalchemy import Engine

from backend.config import Settings

# Importing the module registers its storage schemes with `limits`.
from backend.storage import rate_limits  # noqa: F401
from mobile_api.context import client_ip, services

LOGIN_PER_IP = "30 per minute; 300 per hour"
LOGIN_PER_ACCOUNT_AND_IP = "10 per minute; 100 per hour"
LOGIN_PER_ACCOUNT = "300 per hour; 1000 per day"
OTP_PER_ACCOUNT = "10 per minute"
TEST_PUSH_PER_USER = "5 per minute; 30 per hour"  # each costs a provider request


def _ip() -> str:
    return client_ip() or "unknown"


def _account_digest(name: str) -> str:
    """A keyed hash: counts stay per account, and no key names one."""
    key = services().settings.secret_key.encode()
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:32]


def _named_account() -> str | None:
    """The account a login names, normalised like usernames, so case games share one count."""
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        return None
    return _account_digest(name.strip().lower()[:190])


def account_from_body() -> str:
    account = _named_account()
    return f"account:{account}" if account else f"ip:{_ip()}"


def account_and_ip_from_body() -> str:
    account = _named_account()
    return f"account:{account}:ip:{_ip()}" if account else f"ip:{_ip()}"


def account_from_token() -> str:
    user = g.get("user")
    return f"account:{user.public_id}" if user is not None else f"ip:{_ip()}"


limiter = Limiter(
    key_func=_ip, headers_enabled=True, strategy="fixed-window", key_prefix="estafette"
)


def init_limiter(app: Flask, settings: Settings, engine: Engine) -> None:
    if settings.redis_url:
        app.config.setdefault("RATELIMIT_STORAGE_URI", "estafette+redis://")
        options = {"redis_url": settings.redis_url, "engine": engine}
    else:
        app.config.setdefault("RATELIMIT_STORAGE_URI", "estafette+database://")
        options = {"engine": engine}
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", options)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
