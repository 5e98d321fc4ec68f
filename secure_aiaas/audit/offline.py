"""Verify an audit export offline: no server, no database, no network.

Imports only the standard library and ``cryptography`` (via `chain` and `walk`), so an outside
auditor can run ``python -m secure_aiaas.audit.offline DIR --public-key audit.pem`` on a
machine that has nothing else of the service. Checks, in order:

1. ``manifest.sig`` is a valid Ed25519 signature of ``manifest.json`` by a published key;
2. every file's SHA-256 and size match the manifest;
3. the signed checkpoints and purges in the manifest carry valid signatures;
4. the records form an unbroken chain from the manifest's ``anchor_hash``, every record's
   content matches its hash, every signed checkpoint in the range matches its record, and
   the count and last hash match the manifest (a dropped tail).

Every finding names the record (seq and line of the records file) it concerns.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from secure_aiaas.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    Checkpoint,
    content_bytes,
    hash_content,
    tenant_genesis,
    verify_signature,
)
from secure_aiaas.audit.walk import Damage, Entry, PurgeIndex, walk

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
_LINE = re.compile(
    rb'\{"seq":(\d+),"hash":"([0-9a-f]{64})","prev_hash":"([0-9a-f]{64})",'
    rb'"tenant_prev_hash":(?:"([0-9a-f]{64})"|null),"record":'
)
_CHUNK = 1 << 20


@dataclass
class ExportReport:
    ok: bool = False
    records: int = 0
    tombstones: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    findings: list[Damage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "tombstones": self.tombstones,
            "tenant": self.manifest.get("tenant"),
            "chain": self.manifest.get("chain"),
            "first_seq": self.manifest.get("first_seq"),
            "last_seq": self.manifest.get("last_seq"),
            "findings": [
                {"kind": d.kind, "seq": d.seq, "line": d.line, "message": d.message}
                for d in self.findings
            ],
        }


def load_public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Ed25519 public keys from PEM files (a file may hold several: current and retired)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        text = path.read_text()
        for block in re.findall(
            r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", text, flags=re.DOTALL
        ):
            key = serialization.load_pem_public_key(block.encode())
            if isinstance(key, Ed25519PublicKey):
                raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                keys[hashlib.sha256(raw).hexdigest()[:16]] = key
    return keys


def _jsonl_entries(path: Path, link_field: str, digest: Any) -> Iterator[Entry]:
    link_group = 3 if link_field == "prev_hash" else 4
    with path.open("rb", buffering=_CHUNK) as fh:
        for number, line in enumerate(fh, start=1):
            digest.update(line)
            match = _LINE.match(line)
            if match is None or not line.endswith(b"}\n"):
                yield Entry(0, None, "", False, None, None, False, number, malformed=True)
                continue
            seq = int(match.group(1))
            stored = match.group(2).decode()
            prev = match.group(3).decode()
            tprev_raw = match.group(4)
            tprev = tprev_raw.decode() if tprev_raw is not None else None
            link = prev if link_group == 3 else tprev
            content = line[match.end() : -2]
            if content.startswith(b"null,"):
                try:
                    tomb = json.loads(line)["tombstone"]
                    tenant, ts = str(tomb["tenant"]), str(tomb["ts"])
                except (ValueError, KeyError, TypeError):
                    yield Entry(seq, None, "", False, None, None, False, number, malformed=True)
                    continue
                yield Entry(seq, link, stored, False, tenant, ts, True, number)
                continue
            ok = hash_content(seq, prev, tprev, content) == stored
            yield Entry(seq, link, stored, ok, None, None, False, number)


def _csv_entries(path: Path, link_field: str, digest: Any) -> Iterator[Entry]:
    with path.open("rb") as raw:  # the file hash covers the exact bytes
        for block in iter(lambda: raw.read(_CHUNK), b""):
            digest.update(block)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        for row in reader:
            number = reader.line_num
            try:
                values = dict(zip(header or (), row, strict=True))
                fields: dict[str, Any] = {n: values[n] or None for n in HASHED_FIELDS}
                fields["status"] = int(values["status"]) if values["status"] else None
                fields["latency_ms"] = float(values["latency_ms"]) if values["latency_ms"] else None
                seq, stored = int(values["seq"]), values["hash"]
                prev, tprev = values["prev_hash"], values["tenant_prev_hash"] or None
                tombstone = values["tombstone"] == "1"
            except (ValueError, KeyError, TypeError):
                yield Entry(0, None, "", False, None, None, False, number, malformed=True)
                continue
            link = prev if link_field == "prev_hash" else tprev
            ok = not tombstone and hash_content(seq, prev, tprev, content_bytes(fields)) == stored
            yield Entry(seq, link, stored, ok, fields["tenant"], fields["ts"], tombstone, number)


def verify_export(export_dir: Path, public_keys: dict[str, Ed25519PublicKey]) -> ExportReport:
    """Verify an export directory against the published audit public keys."""
    report = ExportReport()
    try:
        body = (export_dir / MANIFEST).read_bytes()
        manifest = json.loads(body)
        sig_text = (export_dir / SIGNATURE).read_text()
        signature = json.loads(sig_text)
        if not isinstance(manifest, dict) or not isinstance(signature, dict):
            raise ValueError("not an object")  # noqa: TRY004 - one handler for bad files
        # The signature file is not itself signed: accept only its exact, expected form.
        if (
            set(signature) != {"algorithm", "key_id", "signature"}
            or signature["algorithm"] != "Ed25519"
            or sig_text != json.dumps(signature, sort_keys=True) + "\n"
        ):
            raise ValueError("unexpected signature file")
    except (OSError, ValueError) as exc:
        report.findings.append(
            Damage(
                "bad-manifest",
                None,
                f"manifest or signature missing or unreadable ({type(exc).__name__})",
            )
        )
        return report
    report.manifest = manifest
    key = public_keys.get(str(signature.get("key_id")))
    try:
        sig = bytes.fromhex(str(signature.get("signature")))
    except ValueError:
        sig = b""
    if key is None:
        report.findings.append(
            Damage(
                "bad-signature",
                None,
                "manifest signed by key "
                f"{signature.get('key_id')!r}, which is not among the "
                "public keys given",
            )
        )
    elif not verify_signature(key, sig, body):
        report.findings.append(
            Damage(
                "bad-signature",
                None,
                "manifest signature is invalid: the manifest or its signature was altered",
            )
        )
    try:
        _verify_contents(export_dir, manifest, public_keys, report)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        report.findings.append(
            Damage(
                "bad-manifest", None, f"manifest is incomplete or malformed ({type(exc).__name__})"
            )
        )
    report.ok = not report.findings
    return report


def _verify_contents(
    export_dir: Path,
    manifest: dict[str, Any],
    public_keys: dict[str, Ed25519PublicKey],
    report: ExportReport,
) -> None:
    checkpoints = [Checkpoint.from_json(c) for c in manifest["checkpoints"]]
    for checkpoint in checkpoints:
        key = public_keys.get(checkpoint.key_id)
        if key is None or not checkpoint.verify(key):
            report.findings.append(
                Damage(
                    "bad-checkpoint",
                    checkpoint.seq,
                    "checkpoint at "
                    f"seq {checkpoint.seq} has an invalid signature or "
                    "an unknown key",
                )
            )
    purges = PurgeIndex(manifest["purges"], public_keys)
    for purge in purges.invalid:
        report.findings.append(
            Damage(
                "bad-purge",
                purge.get("record_seq"),
                f"purge record {purge.get('record_seq')} has an invalid signature",
            )
        )
    if manifest.get("genesis"):
        start = (
            GENESIS_HASH
            if manifest["chain"] == "global"
            else tenant_genesis(str(manifest["tenant"]))
        )
        if manifest["anchor_hash"] != start:
            report.findings.append(
                Damage(
                    "deleted",
                    manifest.get("first_seq"),
                    "the export claims to start its chain but does not",
                )
            )
    name = manifest["records_file"]
    expected_file = manifest["files"][name]
    link_field = "tenant_prev_hash" if manifest["chain"] == "tenant" else "prev_hash"
    digest = hashlib.sha256()
    path = export_dir / name
    reader = _jsonl_entries if manifest["records_format"] == "jsonl" else _csv_entries
    entries = reader(path, link_field, digest)
    count = int(manifest["count"])
    # A short file (fewer lines than signed) turns an unexplained broken link into a deletion.
    short = _count_lines(path, manifest["records_format"]) < count
    result = walk(
        entries,
        anchor=manifest["anchor_hash"] or "",
        checkpoints={c.seq: c for c in checkpoints},
        purges=purges,
        contiguous=manifest["chain"] == "global",
        short=short,
    )
    for _ in entries:
        pass  # finish hashing the file after an early stop
    report.records, report.tombstones = result.records, result.tombstones
    if result.damage is not None:
        report.findings.append(result.damage)
    else:
        _check_tail(
            manifest, result.records, result.last_seq, result.last_hash, checkpoints, report
        )
    if digest.hexdigest() != expected_file["sha256"]:
        report.findings.append(
            Damage("file-hash", None, f"{name}: SHA-256 differs from the signed manifest")
        )


def _count_lines(path: Path, fmt: str) -> int:
    with path.open("rb") as fh:
        lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(_CHUNK), b""))
    return lines - (1 if fmt == "csv" else 0)


def _check_tail(
    manifest: dict[str, Any],
    records: int,
    last_seq: int,
    last_hash: str | None,
    checkpoints: list[Checkpoint],
    report: ExportReport,
) -> None:
    count = int(manifest["count"])
    if records < count:
        report.findings.append(
            Damage(
                "truncated",
                manifest["last_seq"],
                f"the records end after {records} of {count} "
                f"signed records (seq {last_seq}): the tail up to seq {manifest['last_seq']} "
                "was dropped",
                records + 1 + (manifest["records_format"] == "csv"),
            )
        )
    elif records > count:
        report.findings.append(
            Damage(
                "inserted",
                None,
                f"{records - count} record(s) appended after the signed last record",
                count + 1,
            )
        )
    elif records and last_hash != manifest["last_hash"]:
        report.findings.append(
            Damage(
                "edited", last_seq, "the last record is not the one the manifest signed", records
            )
        )
    late = [c for c in checkpoints if c.seq > last_seq]
    if late and records >= count:
        report.findings.append(
            Damage(
                "truncated",
                late[0].seq,
                f"a signed checkpoint covers seq {late[0].seq}, after the last record",
            )
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m secure_aiaas.audit.offline DIR --public-key FILE``; exit 1 on tampering."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--public-key", type=Path, action="append", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = verify_export(args.export_dir, load_public_keys(args.public_key))
    print(render(report, as_json=args.json))
    return 0 if report.ok else 1


def render(report: ExportReport, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(report.to_json(), sort_keys=True)
    if report.ok:
        m = report.manifest
        return (
            f"export intact: {report.records} records ({report.tombstones} purged), "
            f"{m.get('chain')} chain{' of tenant ' + str(m['tenant']) if m.get('tenant') else ''}"
            f", seq {m.get('first_seq')}..{m.get('last_seq')}, signed by {m.get('key_id')}"
        )
    lines = [f"TAMPERED: {len(report.findings)} finding(s)"]
    for d in report.findings:
        where = f" record {d.seq}" if d.seq is not None else ""
        where += f" (line {d.line})" if d.line is not None else ""
        lines.append(f"  {d.kind}{where}: {d.message}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
