"""The hash chain: canonical form of a record, its hash, and signed checkpoints.

Each record carries ``prev_hash``, the SHA-256 of the previous record's canonical form, so an
edit, deletion, insertion or reordering breaks a link. The sequence number is *storage order*,
not part of the hash: that way an insertion shows up as an insertion (a link skipping one
record), not as every later record being "edited".

A checkpoint signs ``(seq, head_hash, ts, key_id)`` with the Ed25519 audit key, so a dropped
tail is detected against the last checkpoint, and a rewritten chain cannot be re-signed
without the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_HASH = "0" * 64

# The fields a record's hash covers, in the order they are stored. Adding a field is a format
# change: bump CHAIN_FORMAT so verifiers know which set to expect.
CHAIN_FORMAT = 1
HASHED_FIELDS: tuple[str, ...] = (
    "ts",
    "request_id",
    "tenant",
    "subject",
    "key_id",
    "role",
    "method",
    "route",
    "action",
    "object",
    "decision",
    "rule",
    "policy_version",
    "status",
    "latency_ms",
    "details",
)


def canonical(obj: dict[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(fields: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over the hashed fields plus the previous record's hash."""
    body = {name: fields.get(name) for name in HASHED_FIELDS}
    body["prev_hash"] = prev_hash
    body["v"] = CHAIN_FORMAT
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    ts: str
    key_id: str
    signature: bytes

    def payload(self) -> bytes:
        return checkpoint_payload(self.seq, self.head_hash, self.ts, self.key_id)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.payload())
        except InvalidSignature:
            return False
        return True


def checkpoint_payload(seq: int, head_hash: str, ts: str, key_id: str) -> bytes:
    return canonical(
        {"kind": "audit-checkpoint", "v": CHAIN_FORMAT, "seq": seq, "head_hash": head_hash,
         "ts": ts, "key_id": key_id}
    )


def sign_checkpoint(
    signing_key: Ed25519PrivateKey, key_id: str, seq: int, head_hash: str, ts: str
) -> Checkpoint:
    signature = signing_key.sign(checkpoint_payload(seq, head_hash, ts, key_id))
    return Checkpoint(seq=seq, head_hash=head_hash, ts=ts, key_id=key_id, signature=signature)
