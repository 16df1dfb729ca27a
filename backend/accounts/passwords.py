"""Argon2id password hashing (argon2-cffi), tuned to cost about 50–100 ms of CPU per login."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Argon2Cost:
    """The work one hash costs: passes, memory in KiB, lanes."""

    time_cost: int
    memory_cost_kib: int
    parallelism: int


# Argon2id, 32 MiB, 3 passes: about 65 ms of CPU per hash on our 2-core reference machine
# (bench/signin.py prints it), inside the 50–100 ms budget and above OWASP's minimum
# (19 MiB, t=2). Memory-hard, so a GPU farm gains little. Old hashes are upgraded at login.
PRODUCTION_COST = Argon2Cost(time_cost=3, memory_cost_kib=32 * 1024, parallelism=1)


def _hasher_for(cost: Argon2Cost) -> PasswordHasher:
    return PasswordHasher(
        time_cost=cost.time_cost,
        memory_cost=cost.memory_cost_kib,
        parallelism=cost.parallelism,
    )


_hasher = _hasher_for(PRODUCTION_COST)
_EQUALISER = "estafette-timing-equaliser"
# Verified when the username does not exist, so a login takes the same time either way.
_dummy_hash = _hasher.hash(_EQUALISER)


def use_cost(cost: Argon2Cost) -> None:
    """Hash with `cost` from now on. Only the test suite calls it, with a minimal cost:
    a thousand sign-ins at the production cost are minutes of CPU that test nothing."""
    global _hasher, _dummy_hash
    _hasher = _hasher_for(cost)
    _dummy_hash = _hasher.hash(_EQUALISER)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if `password` matches; with no stored hash, spends the same time and says no."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
