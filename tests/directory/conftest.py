"""A signed-in user of a gateway whose directory holds a generated extraction."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.directory.search import correspondents, own_mailboxes
from tests.admin.conftest import SignedIn, sign_in
from tests.directory.support import extraction, import_file


@pytest.fixture(autouse=True)
def _fresh_correspondents():
    """Each test's users and mailboxes are new, in a database that may keep its name."""
    correspondents.forget()
    own_mailboxes.forget()
    yield
    correspondents.forget()
    own_mailboxes.forget()


@pytest.fixture
def user(client, services) -> SignedIn:
    return sign_in(client, services)


@pytest.fixture
def loaded(app, tmp_path: Path) -> Path:
    """The directory, loaded from a generated extraction with its tricky rows."""
    path = extraction(tmp_path, 300)
    result = import_file(app, path)
    assert result.exit_code == 0, result.output
    return path
