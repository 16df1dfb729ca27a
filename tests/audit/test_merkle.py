"""The Merkle tree is RFC 9162's: the same roots and audit paths as the RFC's recursive
definitions, written out literally here, and the shapes of its §2.1.5 example."""

from __future__ import annotations

import hashlib

import pytest

from backend.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    Tree,
    leaf_hash,
    node_hash,
    verify_inclusion,
)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, word for word."""
    n = len(entries)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + entries[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _sha(b"\x01" + _mth(entries[:k]) + _mth(entries[k:]))


def _path(m: int, entries: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1, word for word."""
    n = len(entries)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path(m, entries[:k]), _mth(entries[k:])]
    return [*_path(m - k, entries[k:]), _mth(entries[:k])]


ENTRIES = [bytes([i]) * 32 for i in range(40)]


@pytest.mark.parametrize("n", range(0, 34))
def test_the_root_is_rfc_9162s_mth(n: int) -> None:
    leaves = [leaf_hash(e) for e in ENTRIES[:n]]
    frontier = Frontier()
    frontier.extend(leaves)
    assert frontier.root() == _mth(ENTRIES[:n])
    assert Tree(Frontier(), leaves).root() == _mth(ENTRIES[:n])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 33])
def test_every_audit_path_is_rfc_9162s_path_and_verifies(n: int) -> None:
    leaves = [leaf_hash(e) for e in ENTRIES[:n]]
    tree = Tree(Frontier(), leaves)
    root = _mth(ENTRIES[:n])
    for m in range(n):
        path = tree.path(m)
        assert path == _path(m, ENTRIES[:n])
        assert verify_inclusion(m, n, leaves[m], path, root)
        assert not verify_inclusion(m, n, leaf_hash(b"forged"), path, root)
        if n > 1:
            assert not verify_inclusion((m + 1) % n, n, leaves[m], path, root)


def test_the_rfc_example_tree_of_seven_leaves() -> None:
    """§2.1.5: the path for d0 is [b, h, l]; for d3, [c, g, l]; for d4, [f, j, k]."""
    d = [leaf_hash(bytes([i])) for i in range(7)]
    a, b, c, dd, e, f, j = d
    g, h, i = node_hash(a, b), node_hash(c, dd), node_hash(e, f)
    k, l_ = node_hash(g, h), node_hash(i, j)
    tree = Tree(Frontier(), d)
    assert tree.root() == node_hash(k, l_)
    assert tree.path(0) == [b, h, l_]
    assert tree.path(3) == [c, g, l_]
    assert tree.path(4) == [f, j, k]
    assert tree.path(6) == [i, k]


@pytest.mark.parametrize("purged", [1, 3, 4, 6, 11, 16, 21])
def test_a_purged_prefix_kept_as_a_frontier_still_gives_roots_and_paths(purged: int) -> None:
    n = 29
    leaves = [leaf_hash(e) for e in ENTRIES[:n]]
    prefix = Frontier()
    prefix.extend(leaves[:purged])
    restored = Frontier.from_hex(purged, prefix.to_hex())
    tree = Tree(restored, leaves[purged:])
    full = Tree(Frontier(), leaves)
    for size in range(purged, n + 1):
        assert tree.root(size) == _mth(ENTRIES[:size])
    for m in range(purged, n):
        assert tree.path(m) == full.path(m)
        assert tree.path(m, m + 1) == full.path(m, m + 1)


def test_the_empty_tree_has_the_hash_of_nothing() -> None:
    assert Frontier().root() == EMPTY_ROOT == _sha(b"")
