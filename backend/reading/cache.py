"""A small encrypted cache of raw messages, so reopening a message does not refetch it.

IMAP keeps the body; this is only a convenience, bounded in size per entry, in total and
in age. Entries are AES-GCM sealed with the data key (the message id is the associated
data, so a file cannot be swapped for another), written atomically, and named by the
opaque public message id only.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

from backend.storage.encryption import DataKeyError, decrypt, encrypt

MAX_ENTRY_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_AGE_SECONDS = 15 * 60

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BodyCache:
    """Raw RFC 5322 bytes by message public id, under `<var>/body-cache/`."""

    def __init__(
        self,
        directory: Path,
        *,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> None:
        self.directory = directory
        self.max_entry_bytes = max_entry_bytes
        self.max_total_bytes = max_total_bytes
        self.max_age_seconds = max_age_seconds

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("cache keys are opaque public ids")
        return self.directory / f"{key}.bin"

    @staticmethod
    def _context(key: str) -> bytes:
        return b"body-cache/" + key.encode()

    def get(self, key: str) -> bytes | None:
        """The cached bytes, or None if absent, expired or unreadable."""
        path = self._path(key)
        try:
            if time.time() - path.stat().st_mtime > self.max_age_seconds:
                self.discard(key)
                return None
            return decrypt(path.read_bytes(), self._context(key))
        except FileNotFoundError:
            return None
        except (OSError, DataKeyError):
            self.discard(key)
            return None

    def put(self, key: str, raw: bytes) -> bool:
        """Keep `raw` if it fits the per-entry bound; then enforce age and total bounds."""
        if len(raw) > self.max_entry_bytes:
            return False
        path = self._path(key)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(encrypt(raw, self._context(key)))
            os.replace(temp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            return False
        self.purge()
        return True

    def discard(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def purge(self) -> int:
        """Drop expired entries, then the oldest until the total fits; returns bytes kept."""
        now = time.time()
        entries: list[tuple[float, int, Path]] = []
        try:
            listing = list(self.directory.iterdir())
        except OSError:
            return 0
        for path in listing:
            try:
                stat = path.stat()
            except OSError:
                continue
            stale_temp = path.suffix == ".tmp" and now - stat.st_mtime > 60
            if stale_temp or now - stat.st_mtime > self.max_age_seconds:
                with contextlib.suppress(OSError):
                    path.unlink()
            elif path.suffix == ".bin":
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _mtime, size, _path in entries)
        for _mtime, size, path in sorted(entries):
            if total <= self.max_total_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size
        return total
