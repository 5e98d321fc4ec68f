"""Signed exports verify offline, and every kind of tampering is detected and located.

The tamper matrix runs over exports made from real SQLite and real PostgreSQL, in both
formats (JSONL, CSV) and both chains (one tenant's, global).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.audit.chain import HASHED_FIELDS, content_bytes, hash_content
from secure_aiaas.audit.export import CSV_COLUMNS, jsonl_line
from secure_aiaas.audit.offline import ExportReport, verify_export
from secure_aiaas.crypto import ServerKeys
from tests.compliance.conftest import export, fill


@pytest.fixture(
    params=[("jsonl", "acme"), ("csv", "acme"), ("jsonl", None), ("csv", None)],
    ids=["jsonl-tenant", "csv-tenant", "jsonl-global", "csv-global"],
)
def exported(
    request: pytest.FixtureRequest, store: SqlAuditStore, keys: ServerKeys, tmp_path: Path
) -> tuple[Path, dict[str, Any]]:
    fmt, tenant = request.param
    fill(store, keys, 150)
    out = tmp_path / "export"
    # A middle range: the first record links to one outside the export (the anchor).
    manifest = export(
        store,
        keys,
        out,
        tenant=tenant,
        fmt=fmt,
        since="2026-01-01T00:00:10",
        until="2026-01-01T00:02:20",
    )
    return out, manifest


def lines_of(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(header lines, record lines) of a records file."""
    lines = path.read_bytes().splitlines(keepends=True)
    return (lines[:1], lines[1:]) if path.suffix == ".csv" else ([], lines)


def rewrite(out: Path, manifest: dict[str, Any], records: list[bytes]) -> None:
    path = out / manifest["records_file"]
    header, _ = lines_of(path)
    path.write_bytes(b"".join(header + records))


def first_finding(report: ExportReport) -> tuple[str, int | None]:
    chain = [f for f in report.findings if f.kind != "file-hash"]
    assert chain, report.findings
    return chain[0].kind, chain[0].line


def line_no(manifest: dict[str, Any], index: int) -> int:
    """File line of record ``index`` (0-based): CSV has a header line."""
    return index + (2 if manifest["records_format"] == "csv" else 1)


def test_intact_export_verifies(
    exported: tuple[Path, dict[str, Any]], public_keys: dict[str, Any]
) -> None:
    out, manifest = exported
    report = verify_export(out, public_keys)
    assert report.ok, report.findings
    assert report.records == manifest["count"] > 20
    assert manifest["anchor_hash"] != "0" * 64  # a real middle range, not from genesis
    assert manifest["checkpoints"], "the range must carry signed checkpoints"
    if manifest["chain"] == "tenant":
        _, recs = lines_of(out / manifest["records_file"])
        assert all(b"acme" in r for r in recs)  # another tenant's records are not needed


def parse(rec: bytes, fmt: str) -> dict[str, Any]:
    """One record line as {seq, hash, prev_hash, tenant_prev_hash, record}."""
    if fmt == "jsonl":
        return json.loads(rec)  # type: ignore[no-any-return]
    row = dict(zip(CSV_COLUMNS, next(csv.reader([rec.decode()])), strict=True))
    record: dict[str, Any] = {n: row[n] or None for n in HASHED_FIELDS}
    record["status"] = int(row["status"])
    record["latency_ms"] = float(row["latency_ms"])
    return {
        "seq": int(row["seq"]),
        "hash": row["hash"],
        "prev_hash": row["prev_hash"],
        "tenant_prev_hash": row["tenant_prev_hash"] or None,
        "record": record,
    }


def serialise(entry: dict[str, Any], fmt: str, *, rehash: bool = True) -> bytes:
    """A record line again; ``rehash``: recompute its hash as a forger would."""
    if rehash:
        entry["hash"] = hash_content(
            entry["seq"],
            entry["prev_hash"],
            entry["tenant_prev_hash"],
            content_bytes(entry["record"]),
        )
    if fmt == "jsonl":
        return jsonl_line(
            {
                "seq": entry["seq"],
                "hash": entry["hash"],
                "prev_hash": entry["prev_hash"],
                "tenant_prev_hash": entry["tenant_prev_hash"],
                **entry["record"],
            }
        )
    buf = io.StringIO()
    rec = entry["record"]
    csv.writer(buf, lineterminator="\n").writerow(
        [
            entry["seq"],
            entry["hash"],
            entry["prev_hash"],
            entry["tenant_prev_hash"] or "",
            0,
            *("" if rec[n] is None else rec[n] for n in HASHED_FIELDS),
        ]
    )
    return buf.getvalue().encode()


def _edit(rec: bytes, fmt: str) -> bytes:
    entry = parse(rec, fmt)
    entry["record"]["decision"] = "deny" if entry["record"]["decision"] == "allow" else "allow"
    return serialise(entry, fmt, rehash=False)


def _forge_after(rec: bytes, fmt: str, link_field: str) -> bytes:
    """A self-consistent record claiming to follow ``rec``."""
    entry = parse(rec, fmt)
    entry["record"]["request_id"] = "forged"
    entry["seq"] += 1
    entry[link_field] = entry["hash"]
    return serialise(entry, fmt)


TAMPERS = [
    "edited",
    "edited-rehashed",
    "deleted",
    "deleted-first",
    "inserted",
    "inserted-linked",
    "reordered",
    "truncated",
]


@pytest.mark.parametrize("kind", TAMPERS)
def test_tamper_matrix(
    kind: str, exported: tuple[Path, dict[str, Any]], public_keys: dict[str, Any]
) -> None:
    out, manifest = exported
    fmt = manifest["records_format"]
    _, recs = lines_of(out / manifest["records_file"])
    k = len(recs) // 2
    expected_kind, expected_index = kind.split("-")[0], k
    if kind == "edited":
        recs[k] = _edit(recs[k], fmt)
    elif kind == "edited-rehashed":
        entry = parse(recs[k], fmt)
        entry["record"]["status"] = 999
        recs[k] = serialise(entry, fmt)
    elif kind == "deleted":
        del recs[k]
    elif kind == "deleted-first":
        del recs[0]
        expected_index = 0
    elif kind == "inserted":
        # A copy of the previous record, altered: it repeats that record's link.
        recs.insert(k, _edit(recs[k - 1], fmt))
    elif kind == "inserted-linked":
        link_field = "tenant_prev_hash" if manifest["chain"] == "tenant" else "prev_hash"
        recs.insert(k, _forge_after(recs[k - 1], fmt, link_field))
    elif kind == "reordered":
        recs[k], recs[k + 1] = recs[k + 1], recs[k]
    elif kind == "truncated":
        recs = recs[:-3]
        expected_index = len(recs)
    rewrite(out, manifest, recs)
    report = verify_export(out, public_keys)
    assert not report.ok
    assert any(f.kind == "file-hash" for f in report.findings)
    assert first_finding(report) == (expected_kind, line_no(manifest, expected_index)), (
        report.findings
    )


def test_flipped_byte_anywhere_is_detected_and_located(
    exported: tuple[Path, dict[str, Any]], public_keys: dict[str, Any]
) -> None:
    out, manifest = exported
    pristine = {p.name: p.read_bytes() for p in out.iterdir()}
    rng = random.Random(6)
    cases: list[tuple[str, int]] = []
    for name, data in pristine.items():
        cases += [(name, 0), (name, len(data) - 1)]
        cases += [(name, rng.randrange(len(data))) for _ in range(25)]
    missed = []
    for name, pos in cases:
        for p, data in pristine.items():
            (out / p).write_bytes(data)
        data = bytearray(pristine[name])
        data[pos] ^= 0x01
        (out / name).write_bytes(bytes(data))
        report = verify_export(out, public_keys)
        if report.ok:
            missed.append((name, pos))
            continue
        if name == manifest["records_file"]:
            line = pristine[name].count(b"\n", 0, pos) + 1
            located = {f.line for f in report.findings if f.line is not None}
            if manifest["records_format"] == "jsonl" or line > 1:
                # A flipped CSV quote may shift where the parser sees the record end.
                window = (
                    {line} if manifest["records_format"] == "jsonl" else {line - 1, line, line + 1}
                )
                if not located & window:
                    missed.append((name, pos, line, report.findings))  # type: ignore[arg-type]
        else:
            assert {f.kind for f in report.findings} & {"bad-signature", "bad-manifest"}
    assert not missed, f"{len(missed)} of {len(cases)} flips not detected/located: {missed[:3]}"


def test_consistent_rewrite_is_caught_by_signed_checkpoints(
    exported: tuple[Path, dict[str, Any]], public_keys: dict[str, Any], keys: ServerKeys
) -> None:
    """Even an export re-signed with the real key fails if its chain was rewritten after the
    checkpoints were signed (e.g. the database was rewritten before exporting)."""
    out, manifest = exported
    fmt = manifest["records_format"]
    link_field = "tenant_prev_hash" if manifest["chain"] == "tenant" else "prev_hash"
    path = out / manifest["records_file"]
    header, recs = lines_of(path)
    # Keep the first record; rewrite every later one, with valid links and hashes.
    link = parse(recs[0], fmt)["hash"]
    rewritten = header + recs[:1]
    for rec in recs[1:]:
        entry = parse(rec, fmt)
        entry["record"]["subject"] = "someone-else"
        entry[link_field] = link
        rewritten.append(serialise(entry, fmt))
        link = entry["hash"]
    body = b"".join(rewritten)
    path.write_bytes(body)
    signed = json.loads((out / "manifest.json").read_text())
    signed["files"][path.name] = {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    signed["last_hash"] = link
    text = json.dumps(signed, sort_keys=True, indent=2).encode() + b"\n"
    (out / "manifest.json").write_bytes(text)
    (out / "manifest.sig").write_text(
        json.dumps(
            {
                "algorithm": "Ed25519",
                "key_id": keys.audit_key_id,
                "signature": keys.audit_signing_key.sign(text).hex(),
            },
            sort_keys=True,
        )
        + "\n"
    )
    report = verify_export(out, public_keys)
    assert not report.ok
    assert report.findings[0].kind == "edited"
    assert "checkpoint" in report.findings[0].message


def test_wrong_public_key_fails(exported: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from secure_aiaas.crypto.keystore import init_keys, known_audit_public_keys

    init_keys(tmp_path / "other-keys")
    out, _ = exported
    report = verify_export(out, known_audit_public_keys(tmp_path / "other-keys"))
    assert not report.ok and report.findings[0].kind == "bad-signature"


def test_empty_range_exports_and_verifies(
    store: SqlAuditStore, keys: ServerKeys, tmp_path: Path, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 20)
    manifest = export(store, keys, tmp_path / "e", since="2030-01-01", until="2031-01-01")
    assert manifest["count"] == 0
    assert verify_export(tmp_path / "e", public_keys).ok
    shutil.rmtree(tmp_path / "e")
