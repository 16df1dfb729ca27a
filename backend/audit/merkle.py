"""The Merkle tree of RFC 9162 §2.1 over the audit records' hashes: roots and inclusion proofs.

Leaf `i` is the record with id `i + 1`; its input is the record's 32-byte chain hash. A
purge keeps, instead of the deleted leaves, the roots of the perfect subtrees that covered
them (the `Frontier`), which is all the tree needs to go on and to prove the kept leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


@dataclass
class Frontier:
    """The roots of the perfect subtrees that make up a tree of `size` leaves, largest first.

    One per set bit of `size` (at most 64 hashes), so a writer or a purge keeps the tree
    going without the leaves it has already folded in.
    """

    size: int = 0
    nodes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.nodes) != self.size.bit_count():
            raise ValueError("a frontier holds one subtree root per set bit of its size")

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, merging the equal-sized subtrees it completes."""
        merged, size = leaf, self.size
        while size & 1:
            merged = node_hash(self.nodes.pop(), merged)
            size >>= 1
        self.nodes.append(merged)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the whole tree: the subtrees folded right to left (RFC 9162's split)."""
        if not self.nodes:
            return EMPTY_ROOT
        result = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            result = node_hash(left, result)
        return result

    def blocks(self) -> dict[tuple[int, int], bytes]:
        """Each subtree root by the leaf range [start, end) it covers."""
        result, start = {}, 0
        for bit in reversed(range(self.size.bit_length())):
            if self.size >> bit & 1:
                result[(start, start + (1 << bit))] = self.nodes[len(result)]
                start += 1 << bit
        return result

    def to_hex(self) -> list[str]:
        return [node.hex() for node in self.nodes]

    @classmethod
    def from_hex(cls, size: int, nodes: Sequence[str]) -> Frontier:
        return cls(size, [bytes.fromhex(node) for node in nodes])


class Tree:
    """A tree whose first leaves may be replaced by a frontier: roots and audit paths."""

    def __init__(self, prefix: Frontier, leaves: Sequence[bytes]) -> None:
        self._known = prefix.blocks()
        self._offset = prefix.size
        self._leaves = leaves
        self.size = prefix.size + len(leaves)

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) (RFC 9162 §2.1.1), from the kept leaves and the prefix's roots."""
        known = self._known.get((start, end))
        if known is not None:
            return known
        if end - start == 1:
            if start < self._offset:
                raise LookupError(f"leaf {start} was purged")
            return self._leaves[start - self._offset]
        k = _split(end - start)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return EMPTY_ROOT if size == 0 else self.subtree(0, size)

    def path(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) of RFC 9162 §2.1.3.1: the sibling roots from the leaf up."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError("leaf index outside the tree")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = _split(end - start)
        if index < start + k:
            return [*self._path(index, start, start + k), self.subtree(start + k, end)]
        return [*self._path(index, start + k, end), self.subtree(start, start + k)]


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root a path leads to, or None when the path cannot fit."""
    if index >= size:
        return None
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """Does `leaf` sit at `index` of the tree of `size` leaves whose root is `root`?"""
    return root_from_inclusion(index, size, leaf, path) == root
