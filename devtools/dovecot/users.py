"""The throwaway Dovecot's users: one passwd-file each, so a new user is visible at once.

A mixin of `DovecotServer` (devtools.dovecot.server): the server owns the paths and the
identity it runs as; this is how mailboxes are created and their auth files written.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USERNAME_RE = re.compile(r"^[a-z0-9_@-][a-z0-9._@-]*$")


@dataclass
class _User:
    username: str
    password_hash: str
    uid: int
    gid: int
    home: Path


def hash_password(password: str) -> str:
    """Salted SHA-512 in Dovecot's {SSHA512} format, so no clear text lands on disk."""
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


class DovecotUsers:
    """Mailbox users of a `DovecotServer`; needs its `_identity`, `_users`, `_users_lock`,
    `home()`, `user_file()` and `running`."""

    _identity: Any
    _users: dict[str, _User]
    _users_lock: threading.Lock
    running: bool

    def home(self, username: str) -> Path:  # provided by the server
        raise NotImplementedError

    def user_file(self, username: str) -> Path:  # provided by the server
        raise NotImplementedError

    def add_user(self, username: str, password: str, *, uid: int | None = None) -> None:
        """Create (or update) a mailbox; works before and after start().

        Why uid: Linux counts inotify instances per uid, so benchmarks spread
        thousands of IDLE sessions over several uids (see DESIGN.md).
        """
        username = username.lower()
        if not USERNAME_RE.match(username):
            raise ValueError(
                f"username {username!r}: use letters, digits, . _ @ - (no leading dot)"
            )
        uid, gid = self._uid_gid(uid)
        user = _User(username, hash_password(password), uid, gid, self.home(username))
        with self._users_lock:
            existed = self.user_file(username).exists()
            self._users[username] = user
            self._prepare_home(user)
            self._write_user_file(user)
        if existed and self.running:
            self._wait_for_passwd_file_reload()

    def _uid_gid(self, uid: int | None) -> tuple[int, int]:
        ident = self._identity
        if uid is None or uid == ident.mail_uid:
            return ident.mail_uid, ident.mail_gid
        if not ident.is_root:
            raise ValueError("a per-user uid needs root; as a normal user all mail is ours")
        if uid <= 0:
            raise ValueError("mail cannot be stored as uid 0")
        return uid, ident.mail_gid

    def _prepare_home(self, user: _User) -> None:
        user.home.mkdir(parents=True, exist_ok=True)
        user.home.chmod(0o700)
        if self._identity.is_root:
            os.chown(user.home, user.uid, user.gid)

    def _write_user_file(self, user: _User) -> None:
        """One passwd-file per user, so that a new user is visible at once.

        Why: Dovecot checks a given passwd-file at most once per second, but
        opens a file it has never seen (a new user's) immediately.
        """
        path = self.user_file(user.username)
        previous_mtime = int(path.stat().st_mtime) if path.exists() else 0
        line = f"{user.username}:{user.password_hash}:{user.uid}:{user.gid}::{user.home}::\n"
        self._write_auth_file(path, line, previous_mtime)

    def _write_auth_file(self, path: Path, content: str, previous_mtime: int) -> int:
        """Replace a passwd-file atomically and make sure Dovecot sees a new mtime.

        Why: Dovecot re-reads a passwd-file only when its mtime (in whole
        seconds) or size changed, so two writes within one second could be missed.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".tmp-" + path.name)  # usernames never start with a dot
        tmp.write_text(content)
        tmp.chmod(0o640)
        if self._identity.is_root:
            os.chown(tmp, 0, self._auth_gid())
        mtime = max(int(time.time()), previous_mtime + 1)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, path)
        return mtime

    def _auth_gid(self) -> int:
        return grp.getgrnam(self._identity.internal_group).gr_gid

    @staticmethod
    def _wait_for_passwd_file_reload() -> None:
        """Wait for the next second, when Dovecot next checks a changed passwd-file."""
        time.sleep(1.02 - (time.time() % 1.0))

    # -- lifecycle -----------------------------------------------------------
