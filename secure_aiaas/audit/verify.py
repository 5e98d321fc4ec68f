"""Verify the store: the global chain, every tenant's chain, checkpoints and purges.

Names the first damage: edited, deleted, inserted, reordered, truncated, bad-checkpoint.
Streaming and constant in memory apart from one head hash per tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from secure_aiaas.audit.chain import (
    GENESIS_HASH,
    SORTED_FIELDS,
    Checkpoint,
    content_bytes,
    content_from_values,
    hash_content,
    tenant_genesis,
)
from secure_aiaas.audit.schema import events_table
from secure_aiaas.audit.store import SqlAuditStore
from secure_aiaas.audit.walk import Damage, Entry, PurgeIndex, walk

__all__ = ["Damage", "VerifyReport", "row_entry", "verify_chain", "verify_store"]


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    last_seq: int = 0
    tombstones: int = 0
    damage: Damage | None = None
    warnings: list[str] = field(default_factory=list)
    # Write-ahead records with no outcome after them (the process died between the two):
    # evidence of an interrupted request, not damage. Their seq numbers, oldest first.
    orphaned_attempts: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.damage is None


def row_entry(row: dict[str, Any], link_field: str = "prev_hash") -> Entry:
    """A stored row as a walk entry (hash recomputed unless it is a tombstone)."""
    seq = int(row["seq"])
    tombstone = row.get("details") is None
    hash_ok = (
        not tombstone
        and hash_content(seq, row["prev_hash"], row.get("tenant_prev_hash"), content_bytes(row))
        == row["hash"]
    )
    return Entry(
        seq=seq,
        link=row[link_field],
        hash=row["hash"],
        hash_ok=hash_ok,
        tenant=row.get("tenant"),
        ts=row.get("ts"),
        tombstone=tombstone,
        line=0,
        tenant_link=row.get("tenant_prev_hash"),
        request_id=row.get("request_id"),
        attempt=row.get("decision") == "attempt",
    )


def _check_signatures(
    checkpoints: Iterable[Checkpoint], public_keys: dict[str, Ed25519PublicKey]
) -> Damage | None:
    for checkpoint in checkpoints:
        key = public_keys.get(checkpoint.key_id)
        if key is None or not checkpoint.verify(key):
            where = "" if checkpoint.tenant == "*" else f" of tenant {checkpoint.tenant}"
            return Damage(
                "bad-checkpoint",
                checkpoint.seq,
                f"checkpoint{where} at seq "
                f"{checkpoint.seq} has an invalid signature or an unknown key",
            )
    return None


def verify_chain(
    rows: Iterable[dict[str, Any]],
    checkpoints: list[Checkpoint],
    public_keys: dict[str, Ed25519PublicKey],
    *,
    tenant_checkpoints: list[Checkpoint] | None = None,
    purges: list[dict[str, Any]] | None = None,
) -> VerifyReport:
    """Verify ``rows`` (seq order) against signed ``checkpoints``.

    Args:
        rows: stored records, each with ``seq``, both links, ``hash`` and the hashed fields.
        checkpoints: signed heads of the global chain.
        public_keys: audit public keys by key id (old keys stay here after a rotation).
        tenant_checkpoints: signed heads of tenant chains, checked on the way.
        purges: details["purge"] of the store's purge records (tombstones they cover pass).
    """
    return _verify_entries(
        (row_entry(row) for row in rows),
        checkpoints,
        public_keys,
        tenant_checkpoints or [],
        purges or [],
    )


def _verify_entries(
    entries: Iterable[Entry],
    checkpoints: list[Checkpoint],
    public_keys: dict[str, Ed25519PublicKey],
    tenant_cps: list[Checkpoint],
    purges: list[dict[str, Any]],
) -> VerifyReport:
    report = VerifyReport(checkpoints=len(checkpoints) + len(tenant_cps))
    bad = _check_signatures([*checkpoints, *tenant_cps], public_keys)
    if bad is not None:
        report.damage = bad
        return report
    index = PurgeIndex(purges, public_keys)
    if index.invalid:
        seq = index.invalid[0].get("record_seq")
        report.damage = Damage("edited", seq, f"purge record {seq} has an invalid signature")
        return report
    tenant_heads = {(c.tenant, c.seq): c.head_hash for c in tenant_cps}
    tenant_damage: list[Damage] = []
    open_attempts: dict[str, int] = {}

    def checked() -> Iterator[Entry]:
        # Tenant links are checked here, one head hash per tenant; the walk does the rest.
        last: dict[str, str] = {}
        for entry in entries:
            if entry.request_id is not None:
                if entry.attempt:
                    open_attempts[entry.request_id] = entry.seq
                else:
                    open_attempts.pop(entry.request_id, None)
            tenant = entry.tenant
            if tenant is not None:
                expected = last.get(tenant) or tenant_genesis(tenant)
                signed = tenant_heads.get((tenant, entry.seq))
                if tenant_damage:
                    pass
                elif entry.tenant_link != expected:
                    tenant_damage.append(
                        Damage(
                            "edited",
                            entry.seq,
                            f"record {entry.seq} breaks the chain of tenant {tenant}",
                        )
                    )
                elif signed is not None and signed != entry.hash:
                    tenant_damage.append(
                        Damage(
                            "edited",
                            entry.seq,
                            f"record {entry.seq} differs from tenant {tenant}'s signed checkpoint",
                        )
                    )
                last[tenant] = entry.hash
            elif entry.tenant_link is not None and not tenant_damage:
                tenant_damage.append(
                    Damage(
                        "edited", entry.seq, f"record {entry.seq} has a tenant link but no tenant"
                    )
                )
            yield entry  # keep going: the walk's look-ahead needs what follows

    result = walk(
        checked(),
        anchor=GENESIS_HASH,
        checkpoints={c.seq: c for c in checkpoints},
        purges=index,
        contiguous=True,
    )
    report.records, report.last_seq, report.tombstones = (
        result.records,
        result.last_seq,
        result.tombstones,
    )
    report.damage = result.damage
    report.orphaned_attempts = sorted(open_attempts.values())
    if tenant_damage and (
        report.damage is None or (report.damage.seq or 0) > (tenant_damage[0].seq or 0)
    ):
        # The walk's own finding wins at the same record: it names the kind more precisely.
        report.damage = tenant_damage[0]
    if report.damage is not None:
        return report
    prev_seq = result.last_seq
    if checkpoints and checkpoints[-1].seq > prev_seq:
        last_cp = checkpoints[-1]
        report.damage = Damage(
            "truncated",
            prev_seq + 1,
            f"chain ends at seq {prev_seq} but a checkpoint signed seq "
            f"{last_cp.seq}: records {prev_seq + 1}..{last_cp.seq} were "
            "dropped",
        )
    elif checkpoints and checkpoints[-1].seq < prev_seq:
        report.warnings.append(
            f"records {checkpoints[-1].seq + 1}..{prev_seq} are not yet "
            "covered by a signed checkpoint"
        )
    elif not checkpoints and prev_seq:
        report.warnings.append("no signed checkpoint yet: a dropped tail cannot be detected")
    return report


def verify_store(store: SqlAuditStore, public_keys: dict[str, Ed25519PublicKey]) -> VerifyReport:
    """Verify everything in ``store``: both kinds of chain, checkpoints, purges."""
    return _verify_entries(
        _store_entries(store),
        store.checkpoints(),
        public_keys,
        store.tenant_checkpoints(),
        store.purge_details(),
    )


_LINK_COLUMNS = ("seq", "prev_hash", "tenant_prev_hash", "hash")
_TENANT, _TS, _DETAILS, _REQUEST, _DECISION = (
    SORTED_FIELDS.index(n) for n in ("tenant", "ts", "details", "request_id", "decision")
)


def _store_entries(store: SqlAuditStore, page: int = 5_000) -> Iterator[Entry]:
    """The store's records as walk entries (fast path: raw DB-API tuples in keyset pages,
    the next page fetched on a thread while this one is hashed, content encoded straight
    from the column values)."""
    c = events_table.c
    cols = [c[n] for n in _LINK_COLUMNS] + [c[n] for n in SORTED_FIELDS]

    def fetch(after: int) -> list[Any]:
        stmt = select(*cols).where(c.seq > after).order_by(c.seq).limit(page)
        with store._reader.connect() as conn:
            compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled))
                return list(cursor.fetchall())
            finally:
                cursor.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-verify") as pool:
        pending = pool.submit(fetch, 0)
        while True:
            rows = pending.result()
            if not rows:
                return
            pending = pool.submit(fetch, int(rows[-1][0]))
            for row in rows:
                seq, prev, tprev, stored = row[0], row[1], row[2], row[3]
                values = row[4:]
                tombstone = values[_DETAILS] is None
                ok = (
                    not tombstone
                    and hash_content(seq, prev, tprev, content_from_values(values)) == stored
                )
                yield Entry(
                    seq,
                    prev,
                    stored,
                    ok,
                    values[_TENANT],
                    values[_TS],
                    tombstone,
                    0,
                    False,
                    tprev,
                    values[_REQUEST],
                    values[_DECISION] == "attempt",
                )
            del rows
