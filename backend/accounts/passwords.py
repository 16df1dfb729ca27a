"""Argon2id password hashing (argon2-cffi), tuned to cost about 50–100 ms of CPU per login."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Argon2id, 32 MiB, 3 passes: about 65 ms of CPU per hash on our 2-core reference machine
# (bench/signin.py prints it), inside the 50–100 ms budget and above OWASP's minimum
# (19 MiB, t=2). Memory-hard, so a GPU farm gains little. Old hashes are upgraded at login.
_hasher = PasswordHasher(time_cost=3, memory_cost=32 * 1024, parallelism=1)
# Verified when the username does not exist, so a login takes the same time either way.
_DUMMY_HASH = _hasher.hash("estafette-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if `password` matches; with no stored hash, spends the same time and says no."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
