"""One measured step of bench_compliance, run in its own process (no pytest loaded).

Usage: ``python -m benchmarks.compliance_step export URL KEYS_DIR OUT TENANT|""``,
``... verify-export DIR PEM`` or ``... verify-db URL KEYS_DIR``; prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _peak_rss_kib() -> int:
    # VmHWM is this process's own high-water mark (ru_maxrss survives exec on Linux and
    # would report the parent's peak).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _step(argv: list[str]) -> dict[str, object]:
    """One measured operation, run inside the subprocess."""
    kind = argv[0]
    started = time.perf_counter()
    if kind == "export":
        from secure_aiaas.audit import SqlAuditStore
        from secure_aiaas.audit.export import ExportRequest, export_range
        from secure_aiaas.crypto import load_keys

        url, keys_dir, out, tenant = argv[1], Path(argv[2]), Path(argv[3]), argv[4] or None
        keys = load_keys(keys_dir)
        store = SqlAuditStore(url, timeout_s=60)
        started = time.perf_counter()
        manifest = export_range(
            store,
            out,
            ExportRequest(None, None, tenant, "jsonl"),
            signing_key=keys.audit_signing_key,
            key_id=keys.audit_key_id,
            created_at="bench",
        )
        records, ok = int(manifest["count"]), True
    elif kind == "verify-export":
        from secure_aiaas.audit.offline import load_public_keys, verify_export

        keys = load_public_keys([Path(argv[2])])
        started = time.perf_counter()
        report = verify_export(Path(argv[1]), keys)
        records, ok = report.records, report.ok
    else:  # verify-db
        from secure_aiaas.audit import SqlAuditStore, verify_store
        from secure_aiaas.crypto.keystore import known_audit_public_keys

        store = SqlAuditStore(argv[1], timeout_s=60)
        started = time.perf_counter()
        db_report = verify_store(store, known_audit_public_keys(Path(argv[2])))
        records, ok = db_report.records, db_report.ok
    seconds = time.perf_counter() - started
    return {
        "step": kind,
        "records": records,
        "ok": ok,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds) if seconds else None,
        "peak_rss_mib": round(_peak_rss_kib() / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(_step(sys.argv[1:])))
