"""The encrypted body cache keeps to its bounds; transfer decoding survives any chunking."""

from __future__ import annotations

import base64
import binascii
import os
import time
from pathlib import Path

import pytest

from backend.reading.cache import BodyCache
from backend.reading.server import TransferDecoder
from backend.storage.encryption import set_data_key


@pytest.fixture
def body_cache(tmp_path: Path) -> BodyCache:
    set_data_key(b"k" * 32)
    return BodyCache(
        tmp_path / "body-cache", max_entry_bytes=1000, max_total_bytes=2500, max_age_seconds=60
    )


def test_an_entry_comes_back_as_stored_and_is_sealed_on_disk(body_cache: BodyCache) -> None:
    assert body_cache.put("msg_a", b"Subject: confidential\r\n\r\nbody")

    assert body_cache.get("msg_a") == b"Subject: confidential\r\n\r\nbody"
    assert b"confidential" not in (body_cache.directory / "msg_a.bin").read_bytes()


def test_a_message_larger_than_the_entry_bound_is_not_cached(body_cache: BodyCache) -> None:
    assert body_cache.put("msg_big", b"x" * 1001) is False
    assert body_cache.get("msg_big") is None


def test_the_oldest_entries_go_when_the_total_bound_is_reached(body_cache: BodyCache) -> None:
    for number, age in enumerate((30, 20, 10)):
        body_cache.put(f"msg_{number}", os.urandom(900))
        path = body_cache.directory / f"msg_{number}.bin"
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))

    body_cache.put("msg_new", os.urandom(900))

    kept = sorted(p.stem for p in body_cache.directory.iterdir())
    assert kept == ["msg_2", "msg_new"]
    assert sum(p.stat().st_size for p in body_cache.directory.iterdir()) <= 2500


def test_an_entry_older_than_the_age_bound_is_gone(body_cache: BodyCache) -> None:
    body_cache.put("msg_old", b"old")
    stamp = time.time() - 61
    os.utime(body_cache.directory / "msg_old.bin", (stamp, stamp))

    assert body_cache.get("msg_old") is None
    assert not (body_cache.directory / "msg_old.bin").exists()


def test_an_entry_moved_to_another_message_id_does_not_open(body_cache: BodyCache) -> None:
    body_cache.put("msg_a", b"for a only")
    (body_cache.directory / "msg_a.bin").rename(body_cache.directory / "msg_b.bin")

    assert body_cache.get("msg_b") is None


def test_keys_are_opaque_ids_not_paths(body_cache: BodyCache) -> None:
    with pytest.raises(ValueError):
        body_cache.put("../escape", b"x")


@pytest.mark.parametrize("size", [1, 7, 76, 4096])
def test_base64_decodes_identically_whatever_the_chunk_boundaries(size: int) -> None:
    payload = os.urandom(10_000)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    decoder = TransferDecoder("base64")

    out = b"".join(decoder.feed(encoded[i : i + size]) for i in range(0, len(encoded), size))

    assert out + decoder.finish() == payload


@pytest.mark.parametrize("size", [1, 5, 80])
def test_quoted_printable_decodes_identically_whatever_the_chunk_boundaries(size: int) -> None:
    payload = ("Fièvre à 39,5 °C, œdème. " * 40).encode()
    encoded = binascii.b2a_qp(payload)
    decoder = TransferDecoder("quoted-printable")

    out = b"".join(decoder.feed(encoded[i : i + size]) for i in range(0, len(encoded), size))

    assert out + decoder.finish() == payload


def test_truncated_base64_yields_what_arrived_without_an_error() -> None:
    encoded = base64.b64encode(b"0123456789abcdef")[:-3]
    decoder = TransferDecoder("base64")

    out = decoder.feed(encoded) + decoder.finish()

    assert out == b"0123456789abcde"  # the last, cut-off byte cannot be recovered
