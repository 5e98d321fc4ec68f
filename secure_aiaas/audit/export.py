"""Signed exports of an audit range: records (JSONL or CSV) plus a signed manifest.

An export holds one chain: a tenant's (``--tenant T``: only T's records, linked by
``tenant_prev_hash``) or the global one (every record, linked by ``prev_hash``). The manifest
names the range, the counts, the link the first record must carry (``anchor_hash``), the first
and last hashes, the signed checkpoints and purges inside the range, and the SHA-256 of every
file; ``manifest.sig`` signs the manifest's exact bytes with the Ed25519 audit key.

Streaming: records are read in keyset pages and written line by line, so memory does not
grow with the range.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from secure_aiaas.audit.chain import (
    GENESIS_HASH,
    GLOBAL,
    HASHED_FIELDS,
    content_bytes,
    tenant_genesis,
)
from secure_aiaas.audit.schema import events_table
from secure_aiaas.audit.store import SqlAuditStore

EXPORT_FORMAT = "saiaas-audit-export"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CSV_COLUMNS = ("seq", "hash", "prev_hash", "tenant_prev_hash", "tombstone", *HASHED_FIELDS)
_COLUMNS = ("seq", "prev_hash", "tenant_prev_hash", "hash", *HASHED_FIELDS)
_PAGE = 2_000


@dataclass(frozen=True)
class ExportRequest:
    since: str | None
    until: str | None
    tenant: str | None = None  # None: the global chain (every tenant)
    fmt: str = "jsonl"


class _HashingWriter:
    """A binary file that hashes what goes through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha, self.bytes = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.sha.update(data)
        self.bytes += len(data)


def jsonl_line(row: dict[str, Any]) -> bytes:
    """One record as the export writes it; ``record`` holds the exact hashed bytes."""
    tprev = row["tenant_prev_hash"]
    head = b'{"seq":%d,"hash":"%s","prev_hash":"%s","tenant_prev_hash":%s,"record":' % (
        row["seq"],
        row["hash"].encode(),
        row["prev_hash"].encode(),
        b"null" if tprev is None else b'"' + tprev.encode() + b'"',
    )
    if row["details"] is None:  # tombstone: only what a purge keeps
        tomb = json.dumps(
            {"tenant": row["tenant"], "ts": row["ts"]}, sort_keys=True, separators=(",", ":")
        ).encode()
        return head + b'null,"tombstone":' + tomb + b"}\n"
    return head + content_bytes(row) + b"}\n"


def _iter_rows(store: SqlAuditStore, lo: int, hi: int, tenant: str | None) -> Any:
    """Rows with ``lo <= seq <= hi`` in seq order, one page of at most ``_PAGE`` seq numbers
    at a time. Each page is bounded on both sides: with an open upper bound PostgreSQL may
    plan a bitmap scan of the whole remaining range per page (quadratic on 10^6 records)."""
    cols = [events_table.c[name] for name in _COLUMNS]
    last = lo - 1
    while last < hi:
        upper = min(hi, last + _PAGE)
        stmt = select(*cols).where(events_table.c.seq > last, events_table.c.seq <= upper)
        if tenant is not None:
            stmt = stmt.where(events_table.c.tenant == tenant)
        with store._reader.connect() as conn:
            rows = conn.execute(stmt.order_by(events_table.c.seq)).all()
        last = upper
        for row in rows:
            yield dict(zip(_COLUMNS, row, strict=True))
        del rows  # one page alive at a time, not two


def _write_records(path: Path, fmt: str, rows: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {"count": 0, "tombstones": 0, "first": None, "last": None}
    with path.open("wb") as raw:
        out = _HashingWriter(raw)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if fmt == "csv":
            writer.writerow(CSV_COLUMNS)
        for row in rows:
            stats["count"] += 1
            if stats["first"] is None:
                stats["first"] = row
            stats["last"] = {"seq": row["seq"], "hash": row["hash"]}
            tomb = row["details"] is None
            stats["tombstones"] += tomb
            if fmt == "jsonl":
                out.write(jsonl_line(row))
            else:
                writer.writerow(
                    [
                        row["seq"],
                        row["hash"],
                        row["prev_hash"],
                        row["tenant_prev_hash"] or "",
                        int(tomb),
                        *("" if row[n] is None else row[n] for n in HASHED_FIELDS),
                    ]
                )
                out.write(text.getvalue().encode())
                text.seek(0)
                text.truncate()
    stats["file"] = {"sha256": out.sha.hexdigest(), "bytes": out.bytes}
    return stats


def export_range(
    store: SqlAuditStore,
    out_dir: Path,
    request: ExportRequest,
    *,
    signing_key: Ed25519PrivateKey,
    key_id: str,
    created_at: str,
) -> dict[str, Any]:
    """Write records, ``manifest.json`` and ``manifest.sig`` into ``out_dir``; returns the
    manifest (with ``manifest_sha256`` added, not part of the signed file)."""
    if request.fmt not in ("jsonl", "csv"):
        raise ValueError("format must be jsonl or csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    bounds = store.seq_bounds(request.since, request.until) or (1, 0)
    lo, hi = bounds
    tenant = request.tenant
    name = f"records.{request.fmt}"
    stats = _write_records(out_dir / name, request.fmt, _iter_rows(store, lo, hi, tenant))
    first, last = stats["first"], stats["last"]
    link = "tenant_prev_hash" if tenant is not None else "prev_hash"
    anchor = first[link] if first else None
    chain = tenant if tenant is not None else GLOBAL
    checkpoints = [c.to_json() for c in store.checkpoints(chain, lo, hi)] if first else []
    purges = [
        p
        for p in store.purge_details()
        if (tenant is None or p.get("tenant") == tenant)
        and int(p["first_seq"]) <= hi
        and int(p["last_seq"]) >= lo
    ]
    manifest = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "chain_format": 2,
        "chain": "tenant" if tenant is not None else "global",
        "tenant": tenant,
        "since": request.since,
        "until": request.until,
        "first_seq": first["seq"] if first else None,
        "last_seq": last["seq"] if last else None,
        "count": stats["count"],
        "tombstones": stats["tombstones"],
        "anchor_hash": anchor,
        "first_hash": first["hash"] if first else None,
        "last_hash": last["hash"] if last else None,
        # True when the range starts at the very first record of its chain.
        "genesis": anchor == (GENESIS_HASH if tenant is None else tenant_genesis(tenant)),
        "records_file": name,
        "records_format": request.fmt,
        "files": {name: stats["file"]},
        "checkpoints": checkpoints,
        "purges": purges,
        "key_id": key_id,
        "created_at": created_at,
    }
    body = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    (out_dir / MANIFEST).write_bytes(body)
    signature = {
        "key_id": key_id,
        "algorithm": "Ed25519",
        "signature": signing_key.sign(body).hex(),
    }
    (out_dir / SIGNATURE).write_text(json.dumps(signature, sort_keys=True) + "\n")
    return {**manifest, "manifest_sha256": hashlib.sha256(body).hexdigest()}


def archive(export_dir: Path, target: Path) -> Path:
    """Pack an export directory into a ``.tar.gz`` (for download)."""
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(export_dir.iterdir()):
            tar.add(path, arcname=f"audit-export/{path.name}")
    return target
