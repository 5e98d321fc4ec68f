"""Walk the chain and name the first damage: edited, deleted, inserted, reordered, truncated.

Streaming, constant memory: records come in seq order with a bounded look-ahead window (to
recognise a record that was moved), and checkpoints are few (one per 1,000 records or minute).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from secure_aiaas.audit.chain import GENESIS_HASH, Checkpoint, record_hash

LOOKAHEAD = 256


@dataclass(frozen=True)
class Damage:
    kind: str  # edited | deleted | inserted | reordered | truncated | bad-checkpoint
    seq: int
    message: str


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    last_seq: int = 0
    damage: Damage | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.damage is None


def _windowed(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], deque[dict[str, Any]]]]:
    """Each row with the (up to LOOKAHEAD) rows that follow it."""
    window: deque[dict[str, Any]] = deque()
    it = iter(rows)
    for row in it:
        window.append(row)
        if len(window) > LOOKAHEAD:
            current = window.popleft()
            yield current, window
    while window:
        current = window.popleft()
        yield current, window


def verify_chain(
    rows: Iterable[dict[str, Any]],
    checkpoints: list[Checkpoint],
    public_keys: dict[str, Ed25519PublicKey],
) -> VerifyReport:
    """Verify ``rows`` (seq order) against signed ``checkpoints``.

    Args:
        rows: stored records, each with ``seq``, ``prev_hash``, ``hash`` and the hashed fields.
        checkpoints: signed chain heads.
        public_keys: audit public keys by key id (old keys stay here after a rotation).
    """
    report = VerifyReport(checkpoints=len(checkpoints))
    by_seq: dict[int, Checkpoint] = {}
    for checkpoint in checkpoints:
        key = public_keys.get(checkpoint.key_id)
        if key is None or not checkpoint.verify(key):
            report.damage = Damage("bad-checkpoint", checkpoint.seq,
                                   f"checkpoint at seq {checkpoint.seq} has an invalid signature"
                                   " or an unknown key")
            return report
        by_seq[checkpoint.seq] = checkpoint

    expected_prev = GENESIS_HASH
    prev_seq = 0
    recent: deque[str] = deque(maxlen=2)  # hashes of the last two records accepted
    for row, ahead in _windowed(rows):
        seq = int(row["seq"])
        report.records += 1
        if record_hash(row, row["prev_hash"]) != row["hash"]:
            report.damage = Damage("edited", seq, f"record {seq}: content does not match its hash")
            return report
        if row["prev_hash"] != expected_prev:
            report.damage = _classify_link(row, expected_prev, prev_seq, recent, ahead)
            return report
        checkpoint = by_seq.get(seq)
        if checkpoint is not None and checkpoint.head_hash != row["hash"]:
            report.damage = Damage("edited", seq, f"record {seq} differs from the signed "
                                   "checkpoint at that position (chain rewritten)")
            return report
        recent.append(row["hash"])
        expected_prev = row["hash"]
        prev_seq = seq

    report.last_seq = prev_seq
    if checkpoints and checkpoints[-1].seq > prev_seq:
        last = checkpoints[-1]
        report.damage = Damage("truncated", prev_seq + 1,
                               f"chain ends at seq {prev_seq} but a checkpoint signed seq "
                               f"{last.seq}: records {prev_seq + 1}..{last.seq} were dropped")
    elif checkpoints and checkpoints[-1].seq < prev_seq:
        report.warnings.append(f"records {checkpoints[-1].seq + 1}..{prev_seq} are not yet "
                               "covered by a signed checkpoint")
    elif not checkpoints and prev_seq:
        report.warnings.append("no signed checkpoint yet: a dropped tail cannot be detected")
    return report


def _classify_link(
    row: dict[str, Any],
    expected_prev: str,
    prev_seq: int,
    recent: deque[str],
    ahead: deque[dict[str, Any]],
) -> Damage:
    seq = int(row["seq"])
    if any(later["hash"] == row["prev_hash"] for later in ahead):
        return Damage("reordered", seq, f"record {seq} is out of order: its predecessor appears "
                      "later in the chain")
    if ahead and ahead[0]["prev_hash"] == expected_prev:
        return Damage("inserted", seq, f"record {seq} was inserted: the chain continues after "
                      "it as if it were not there")
    if seq > prev_seq + 1:
        return Damage("deleted", prev_seq + 1,
                      f"records {prev_seq + 1}..{seq - 1} are missing (deleted)")
    if len(recent) == 2 and row["prev_hash"] == recent[0]:
        return Damage("inserted", prev_seq, f"record {prev_seq} was inserted: record {seq} "
                      f"links to record {prev_seq - 1}")
    if prev_seq == 0:
        return Damage("deleted", seq, f"record {seq} does not link to the start of the chain: "
                      "earlier records were deleted")
    return Damage("edited", prev_seq, f"record {prev_seq} was replaced, or a record after it "
                  f"deleted: record {seq} links to a record that is not in the chain")
