"""Signed tree heads of the audit trail, and the standalone check of an inclusion proof.

A checkpoint is what a transparency log publishes (RFC 9162 §4.10): the number of records
and the Merkle root over their hashes, signed with an Ed25519 key that the database never
holds. Whoever can rewrite the table can recompute the SHA-256 chain, but not a signature,
so a checkpoint kept outside the database pins the history up to its size.

`check_proof` needs nothing but a proof and the public key: it is what a third party runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backend.audit.merkle import leaf_hash, verify_inclusion

ORIGIN = "estafette-audit"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256(raw public key): names the key that signed."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: `tree_size` records (ids 1..tree_size) have root `root_hash`."""

    tree_size: int
    root_hash: bytes
    timestamp: str
    key_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        """The exact bytes signed, in the manner of a C2SP checkpoint note body."""
        return signed_body(self.tree_size, self.root_hash, self.timestamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": ORIGIN,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Checkpoint:
        """Parse one; ValueError when a field is missing or malformed."""
        try:
            if value["origin"] != ORIGIN:
                raise ValueError("not an Estafette audit checkpoint")
            return cls(
                tree_size=int(value["tree_size"]),
                root_hash=bytes.fromhex(value["root_hash"]),
                timestamp=str(value["timestamp"]),
                key_id=str(value["key_id"]),
                signature=base64.b64decode(value["signature"], validate=True),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from None

    def valid_under(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return False
        return True


def signed_body(tree_size: int, root_hash: bytes, timestamp: str) -> bytes:
    return f"{ORIGIN}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n{timestamp}\n".encode()


def sign_tree_head(
    key: Ed25519PrivateKey, tree_size: int, root_hash: bytes, at: datetime
) -> Checkpoint:
    timestamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Checkpoint(
        tree_size=tree_size,
        root_hash=root_hash,
        timestamp=timestamp,
        key_id=key_id(key.public_key()),
        signature=key.sign(signed_body(tree_size, root_hash, timestamp)),
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM public key (or a private key, whose public half is taken)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        key: Any = serialization.load_pem_private_key(data, password=None)
        key = key.public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 key")
    return key


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Every checkpoint of an append-only file (one JSON object a line), oldest first.

    A line that does not parse is an error, not something to skip: the file is evidence.
    """
    if not path.is_file():
        return []
    result = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            result.append(Checkpoint.from_json(json.loads(line)))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    return result


def check_proof(proof: dict[str, Any], public_key: Ed25519PublicKey) -> tuple[bool, str]:
    """Check an inclusion proof from `audit prove` with the public key alone.

    The record's chain hash is a leaf (RFC 9162 §2.1.1) of the tree whose head the
    gateway signed; the audit path (§2.1.3.2) must lead from it to the signed root.
    """
    try:
        checkpoint = Checkpoint.from_json(proof["checkpoint"])
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
        record_hash = bytes.fromhex(proof["record_hash"])
        leaf = bytes.fromhex(proof["leaf_hash"])
        path = [bytes.fromhex(node) for node in proof["audit_path"]]
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"malformed proof: {exc}"
    if checkpoint.key_id != key_id(public_key) or not checkpoint.valid_under(public_key):
        return False, "the tree head is not signed by this key"
    if size != checkpoint.tree_size:
        return False, "the proof is for another tree size than the signed head"
    if leaf != leaf_hash(record_hash):
        return False, "the leaf hash is not the record hash's"
    if not verify_inclusion(index, size, leaf, path, checkpoint.root_hash):
        return False, "the audit path does not lead to the signed root"
    return True, f"record {index + 1} is in the signed tree of {size} records"


def main(argv: list[str] | None = None) -> int:
    """`python -m backend.audit.checkpoints PROOF.json --public-key KEY.pem`: no gateway needed."""
    import argparse

    parser = argparse.ArgumentParser(description=check_proof.__doc__)
    parser.add_argument("proof", type=Path)
    parser.add_argument("--public-key", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        proof = json.loads(args.proof.read_text())
    except ValueError as exc:
        print(f"not a JSON proof: {exc}")
        return 1
    ok, reason = check_proof(proof, load_public_key(args.public_key))
    print(f"proof valid: {reason}" if ok else f"proof REJECTED: {reason}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
