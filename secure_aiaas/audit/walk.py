"""The chain walk shared by the store's verifier and the offline export verifier.

Streaming, constant memory: entries come in seq order with a bounded look-ahead window (to
recognise a record that was moved). A broken *link* is classified before a wrong *hash*, so
an inserted or reordered record is named as such rather than as "edited". Standard library
only (plus `chain`), so the offline verifier can use it without a database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from secure_aiaas.audit.chain import Checkpoint, verify_purge

LOOKAHEAD = 256


@dataclass(frozen=True)
class Damage:
    kind: str  # edited | deleted | inserted | reordered | truncated | bad-checkpoint | ...
    seq: int | None
    message: str
    line: int | None = None  # line of the records file (exports only)


@dataclass(slots=True)
class Entry:
    """One record as the walk sees it: position, link, stored hash, whether content matches."""

    seq: int
    link: str | None
    hash: str
    hash_ok: bool
    tenant: str | None
    ts: str | None
    tombstone: bool
    line: int = 0
    malformed: bool = False  # an export line that is not a record at all
    tenant_link: str | None = None  # tenant_prev_hash, when walking the global chain
    request_id: str | None = None
    attempt: bool = False  # a write-ahead record (its outcome follows, or it is an orphan)


@dataclass
class WalkResult:
    records: int = 0
    last_seq: int = 0
    last_hash: str | None = None
    damage: Damage | None = None
    tombstones: int = 0
    warnings: list[str] = field(default_factory=list)


class PurgeIndex:
    """Signed purges: which tombstones are legitimate, and the hash each purge ended on."""

    def __init__(
        self, purges: Iterable[dict[str, Any]], public_keys: dict[str, Ed25519PublicKey]
    ) -> None:
        self.valid: list[dict[str, Any]] = []
        self.invalid: list[dict[str, Any]] = []
        for purge in purges:
            (self.valid if verify_purge(purge, public_keys) else self.invalid).append(purge)
        self.by_last_seq = {int(p["last_seq"]): p for p in self.valid}

    def covers(self, entry: Entry) -> bool:
        return any(
            p["tenant"] == entry.tenant
            and int(p["first_seq"]) <= entry.seq <= int(p["last_seq"])
            and (entry.ts is None or entry.ts < p["cutoff"])
            for p in self.valid
        )


def _windowed(entries: Iterable[Entry]) -> Iterator[tuple[Entry, deque[Entry]]]:
    """Each entry with the (up to LOOKAHEAD) entries that follow it."""
    window: deque[Entry] = deque()
    for entry in entries:
        window.append(entry)
        if len(window) > LOOKAHEAD:
            yield window.popleft(), window
    while window:
        yield window.popleft(), window


def walk(
    entries: Iterable[Entry],
    *,
    anchor: str,
    checkpoints: dict[int, Checkpoint],
    purges: PurgeIndex,
    contiguous: bool,
    short: bool = False,
) -> WalkResult:
    """Follow ``link`` from ``anchor`` through ``entries``; stop at the first damage.

    Args:
        anchor: the link the first entry must carry (genesis, or the hash before a range).
        checkpoints: signed heads by seq (already signature-checked), compared on the way.
        contiguous: seq numbers have no gaps (the global chain), so a gap is a deletion.
        short: fewer records than expected (an export's signed count): a broken link that is
            not an insertion or reordering is then a deletion rather than an edit.
    """
    result = WalkResult()
    expected = anchor
    prev: Entry | None = None
    recent: deque[str] = deque(maxlen=2)
    for entry, ahead in _windowed(entries):
        result.records += 1
        if entry.malformed:
            result.damage = Damage(
                "edited",
                entry.seq or None,
                f"line {entry.line} is not a well-formed record",
                entry.line,
            )
            return result
        if entry.link != expected:
            result.damage = _classify_link(
                entry, expected, prev, recent, ahead, contiguous=contiguous, short=short
            )
            return result
        if entry.tombstone:
            if not purges.covers(entry):
                result.damage = Damage(
                    "edited",
                    entry.seq,
                    f"record {entry.seq} was emptied without a signed purge covering it",
                    entry.line,
                )
                return result
            result.tombstones += 1
        elif not entry.hash_ok:
            result.damage = Damage(
                "edited",
                entry.seq,
                f"record {entry.seq}: content does not match its hash",
                entry.line,
            )
            return result
        checkpoint = checkpoints.get(entry.seq)
        if checkpoint is not None and checkpoint.head_hash != entry.hash:
            result.damage = Damage(
                "edited",
                entry.seq,
                f"record {entry.seq} differs from the "
                "signed checkpoint at that position (chain rewritten)",
                entry.line,
            )
            return result
        purge = purges.by_last_seq.get(entry.seq)
        if purge is not None and purge["last_purged_hash"] != entry.hash:
            result.damage = Damage(
                "edited",
                entry.seq,
                f"record {entry.seq} is not the last record the signed purge removed",
                entry.line,
            )
            return result
        recent.append(entry.hash)
        expected = entry.hash
        prev = entry
        result.last_seq = entry.seq
        result.last_hash = entry.hash
    return result


def _classify_link(
    entry: Entry,
    expected: str,
    prev: Entry | None,
    recent: deque[str],
    ahead: deque[Entry],
    *,
    contiguous: bool,
    short: bool,
) -> Damage:
    seq, line = entry.seq, entry.line
    if any(later.hash == entry.link for later in ahead):
        return Damage(
            "reordered",
            seq,
            f"record {seq} is out of order: its predecessor appears later in the chain",
            line,
        )
    if ahead and ahead[0].link == expected:
        return Damage(
            "inserted",
            seq,
            f"record {seq} was inserted: the chain continues after it as if it were not there",
            line,
        )
    if not entry.hash_ok and not entry.tombstone and (not ahead or ahead[0].link == entry.hash):
        # Its own link was changed (links are hashed): the record itself was edited.
        return Damage(
            "edited", seq, f"record {seq}: its link and content do not match its hash", line
        )
    if len(recent) == 2 and entry.link == recent[0] and prev is not None:
        return Damage(
            "inserted",
            prev.seq,
            f"record {prev.seq} was inserted: record {seq} links to the record before it",
            prev.line,
        )
    if prev is None:
        return Damage(
            "deleted",
            seq,
            f"record {seq} does not link to the start of the range: records before it were deleted",
            line,
        )
    if (contiguous and seq > prev.seq + 1) or (not contiguous and short):
        missing = f"{prev.seq + 1}..{seq - 1}" if contiguous else f"between {prev.seq} and {seq}"
        return Damage(
            "deleted",
            prev.seq + 1 if contiguous else seq,
            f"records {missing} are missing (deleted)",
            line,
        )
    return Damage(
        "edited",
        prev.seq,
        f"record {prev.seq} was replaced, or a record after it "
        f"deleted: record {seq} links to a record that is not in the chain",
        prev.line,
    )
