"""Per-process services and per-request database sessions, reachable from any view."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.accounts.revocations import RevocationStore
from backend.audit.trail import Actor, AuditTrail
from backend.config import Settings


@dataclass
class Services:
    """What the app holds for its whole life. Nothing here is per-user state."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    audit: AuditTrail
    revocations: RevocationStore


def services() -> Services:
    return current_app.extensions["estafette"]


def db() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = services().sessions()
    return g.db


def peer_is_trusted_proxy() -> bool:
    """Is the TCP peer itself (not X-Forwarded-For) one of ESTAFETTE_TRUSTED_PROXIES?"""
    original = request.environ.get("werkzeug.proxy_fix.orig", {})
    peer = original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR")
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(proxy, strict=False)
        for proxy in services().settings.trusted_proxies
    )


def client_ip() -> str | None:
    """The caller's address; ProxyFix has already applied the trusted proxies' headers."""
    return request.remote_addr


def current_actor() -> Actor:
    """The audit actor for this request (anonymous until a session is verified)."""
    return g.get("actor") or Actor(user="anonymous", source_ip=client_ip())


def init_request_scope(app: Flask) -> None:
    @app.teardown_appcontext
    def _close_db(exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()
