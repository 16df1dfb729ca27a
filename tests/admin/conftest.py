"""Signed-in administrators and users for the admin specifications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from backend.storage.models import User
from tests.factories import create_user
from tests.support import Authenticator, bearer


@dataclass
class SignedIn:
    """A user signed in through the API, with what a test needs to act as them."""

    username: str
    user_id: str
    tokens: dict
    authenticator: Authenticator

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.tokens["access_token"])

    @property
    def device_id(self) -> str:
        return self.tokens["device_id"]


def sign_in(client: Any, services: Any, *, admin: bool = False, device: dict | None = None):
    """Create a user and sign them in with password and TOTP, like the app does."""
    username = create_user(services, admin=admin)
    authenticator = Authenticator()
    tokens = authenticator.sign_in(client, username, device=device)
    with services.sessions() as db:
        user_id = db.scalar(select(User.public_id).where(User.username == username))
    return SignedIn(username, user_id, tokens, authenticator)


@pytest.fixture
def admin(client, services) -> SignedIn:
    """An administrator who has just confirmed their second factor."""
    return sign_in(client, services, admin=True)


@pytest.fixture
def member(client, services) -> SignedIn:
    """A plain user (no admin role)."""
    return sign_in(client, services)
