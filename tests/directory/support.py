"""What the directory specifications share: a generated extraction, imported by the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import DirectoryEntry, Folder, Membership, Message, User
from devtools.directory_extraction import write_extraction
from tests.support import body


def extraction(tmp_path: Path, entries: int = 200, *, seed: int = 18, name: str = "x.txt") -> Path:
    return write_extraction(tmp_path / name, entries, seed=seed)


def import_file(app: Any, source: str | Path) -> Any:
    """`flask --app mobile_api directory import SOURCE`, as the operator runs it."""
    return app.test_cli_runner().invoke(args=["directory", "import", str(source)])


def entry_count(services: Any) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.count()).select_from(DirectoryEntry))


def search(client: Any, headers: dict, q: str, limit: int = 10) -> list[dict]:
    response = client.get(
        "/api/v1/directory", query_string={"q": q, "limit": limit}, headers=headers
    )
    assert response.status_code == 200, body(response)
    return body(response)["items"]


def own_mailbox(
    services: Any,
    address: str,
    *,
    kind: str = "PER",
    owner: str | None = None,
    display_name: str | None = None,
) -> None:
    """A mailbox registered in Estafette (never connected to here)."""
    with session_scope(services.sessions) as db:
        mailbox = registry.create_mailbox(
            db=db,
            address=address,
            kind=kind,
            display_name=display_name,
            imap=registry.ServerSettings("imap.invalid", 993, "tls", "password", address, "x"),
        )
        if owner is not None:
            user = db.scalar(select(User).where(User.username == owner))
            registry.grant(db=db, mailbox=mailbox, user=user, role="owner")


def received_from(services: Any, owner: str, sender: str) -> None:
    """A cached message in one of `owner`'s mailboxes, from `sender`: a recent correspondent."""
    with session_scope(services.sessions) as db:
        user = db.scalar(select(User).where(User.username == owner))
        mailbox_id = db.scalar(select(Membership.mailbox_id).where(Membership.user_id == user.id))
        folder = Folder(mailbox_id=mailbox_id, name="INBOX", role="inbox", uidvalidity=1)
        db.add(folder)
        db.flush()
        db.add(
            Message(
                mailbox_id=mailbox_id,
                folder_id=folder.id,
                uid=1,
                sort_key=datetime.now(UTC),
                sender={"name": None, "address": sender},
                recipients={"to": [], "cc": []},
            )
        )
