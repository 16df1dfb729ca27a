"""Brute-force defence on the sign-in calls, with flask-limiter, per IP and per account.

With `ESTAFETTE_REDIS_URL` every api process shares one count. Without it (the embedded
mode, a single process) counts are kept in memory. Independently of these rates, five wrong
codes lock the account in the database (`backend.accounts.users`), shared by all processes.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter

from backend.config import Settings
from mobile_api.context import client_ip

LOGIN_PER_IP = "30 per minute; 300 per hour"
LOGIN_PER_ACCOUNT = "10 per minute; 100 per hour"
OTP_PER_ACCOUNT = "10 per minute"


def _ip() -> str:
    return client_ip() or "unknown"


def account_from_body() -> str:
    """The account a login names, normalised like usernames, so case games share one count."""
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return f"account:{str(name).strip().lower()[:190]}" if name else f"ip:{_ip()}"


def account_from_token() -> str:
    user = g.get("user")
    return f"account:{user.public_id}" if user is not None else f"ip:{_ip()}"


limiter = Limiter(
    key_func=_ip, headers_enabled=True, strategy="moving-window", key_prefix="estafette"
)


def init_limiter(app: Flask, settings: Settings) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", settings.redis_url or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
