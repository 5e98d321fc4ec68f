"""The compliance report from a verified export, and exports in constant memory."""

from __future__ import annotations

import json
import re
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.audit.offline import verify_export
from secure_aiaas.crypto import ServerKeys, load_keys
from tests.compliance.conftest import export, fill, make_event
from tests.conftest import run_cli, service_env


def test_report_figures_charts_and_manifest_hash(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    env = service_env(tmp_path, keys_dir, policy_dir)
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'data' / 'audit.db'}")
    store.create_schema()
    fill(store, load_keys(keys_dir), 300)
    store.dispose()
    out = tmp_path / "report.html"
    run = run_cli(
        env,
        "audit",
        "report",
        "--tenant",
        "acme",
        "--since",
        "2026-01-01",
        "--until",
        "2026-01-02",
        "-o",
        str(out),
        "--export-dir",
        str(tmp_path / "exp"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    page = out.read_text()
    # The figures, recomputed independently from the same deterministic events.
    events = [make_event(i) for i in range(300) if i % 3 == 0]  # acme is every third
    decisions = Counter(e.decision for e in events)
    assert result["decisions"] == dict(decisions) and result["records"] == len(events)
    pii: Counter[str] = Counter()
    for e in events:
        for kind, n in (e.details.get("pii") or {}).items():  # type: ignore[union-attr]
            pii[kind] += n
    assert result["pii"] == {k: v for k, v in pii.items() if v}
    encrypted = sum(1 for e in events if e.decision == "allow" and "he" in e.details)
    assert result["modes"]["encrypted (HE)"] == encrypted
    assert result["modes"]["plaintext"] == decisions["allow"] - encrypted
    # Charts are embedded PNGs; the manifest hash the report was computed from is shown,
    # and the export it names is kept and verifies.
    assert len(re.findall(r'src="data:image/png;base64,iVBOR', page)) == 7
    assert result["manifest_sha256"] in page
    assert "default-deny" in page and "EMAIL_ADDRESS" in page
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["tenant"] == "acme" and manifest["count"] == len(events)
    # The export behind the report is itself on record, naming its manifest.
    audit = SqlAuditStore(f"sqlite:///{tmp_path / 'data' / 'audit.db'}")
    exports = [
        json.loads(r["details"])["export"]
        for r in audit.iter_records()
        if r["action"] == "audit.export" and r["decision"] != "attempt"
    ]
    audit.dispose()
    assert [e["manifest_sha256"] for e in exports] == [result["manifest_sha256"]]
    # No personal data or payloads in the page: only entity *types* and counts.
    assert "@" not in re.sub(r"data:image/png;base64,[^\"]+", "", page)


def _peak_bytes(
    store: SqlAuditStore, keys: ServerKeys, out: Path, public_keys: dict[str, Any]
) -> tuple[int, int]:
    tracemalloc.start()
    export(store, keys, out, tenant=None)
    export_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    report = verify_export(out, public_keys)
    verify_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report.ok, report.findings
    return export_peak, verify_peak


def test_export_and_verify_run_in_constant_memory(
    store: SqlAuditStore, keys: ServerKeys, tmp_path: Path, public_keys: dict[str, Any]
) -> None:
    """Peak memory at 50,000 records stays that at 5,000 (plus a small constant): held in
    memory, 45,000 more records would be tens of MB."""
    fill(store, keys, 5_000, batch=5_000)
    small = _peak_bytes(store, keys, tmp_path / "small", public_keys)
    fill(store, keys, 45_000, batch=5_000, start=5_000)
    large = _peak_bytes(store, keys, tmp_path / "large", public_keys)
    assert json.loads((tmp_path / "large" / "manifest.json").read_text())["count"] == 50_000
    for before, after in zip(small, large, strict=True):
        # 10x the records; memory may not follow (the 1 MiB slack covers page buffers).
        assert after < before * 1.5 + 1024 * 1024, (small, large)
