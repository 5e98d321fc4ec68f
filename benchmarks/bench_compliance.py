"""Compliance exports at scale: export and offline-verify throughput and peak memory at
10^4, 10^5 and 10^6 records, on SQLite and PostgreSQL; plus verification of the store itself.

Each measured step runs in a fresh subprocess (`benchmarks/compliance_step.py`), so its peak
RSS (``VmHWM``) is that step's alone: interpreter and libraries included, which is what an
operator would see.

    make bench BENCH="-k compliance"            # all sizes (10^6 takes a few minutes)
    python -m benchmarks.compliance_step export URL KEYS OUT ""     # one step by hand
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SIZES = (10_000, 100_000, 1_000_000)
CHUNK = 10_000


def bulk_fill(url: str, keys_dir: Path, n: int) -> None:
    """``n`` chained records in chunks of 10^4, each followed by signed checkpoints."""
    from secure_aiaas.audit import SqlAuditStore
    from secure_aiaas.audit.store import event_fields
    from secure_aiaas.crypto import load_keys
    from tests.compliance.conftest import make_event

    keys = load_keys(keys_dir)
    store = SqlAuditStore(url, timeout_s=60)
    store.create_schema()
    for start in range(0, n, CHUNK):
        # Spread over 10 days so time ranges mean something.
        batch = [
            event_fields(make_event(i, day=1 + i * 10 // n))
            for i in range(start, min(n, start + CHUNK))
        ]
        with store._writer.begin() as conn:
            store.append_locked(conn, batch)
        store.write_checkpoint(
            keys.audit_signing_key, keys.audit_key_id, "2026-02-01T00:00:00+00:00"
        )
    store.dispose()


def run_step(*argv: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.compliance_step", *argv],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("db")
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp / 'audit.db'}"
        return
    import psycopg

    from tests.conftest import PG_ADMIN_URL, require_service

    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield "postgres", f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.parametrize("n", SIZES, ids=[f"1e{len(str(s)) - 1}" for s in SIZES])
def test_compliance_export_verify(
    n: int, backend: tuple[str, str], tmp_path: Path, record_figures
) -> None:  # type: ignore[no-untyped-def]
    from secure_aiaas.crypto import init_keys, load_keys
    from secure_aiaas.crypto.keystore import public_key_pem

    name, url = backend
    keys_dir = tmp_path / "keys"
    init_keys(keys_dir)
    pem = tmp_path / "audit.pem"
    pem.write_bytes(public_key_pem(load_keys(keys_dir).audit_public_key))
    started = time.perf_counter()
    bulk_fill(url, keys_dir, n)
    fill_s = time.perf_counter() - started
    rows = {
        "export_global": run_step("export", url, str(keys_dir), str(tmp_path / "g"), ""),
        "export_tenant": run_step("export", url, str(keys_dir), str(tmp_path / "t"), "acme"),
        "verify_export_global": run_step("verify-export", str(tmp_path / "g"), str(pem)),
        "verify_export_tenant": run_step("verify-export", str(tmp_path / "t"), str(pem)),
        "verify_store": run_step("verify-db", url, str(keys_dir)),
    }
    for step, row in rows.items():
        assert row["ok"], (step, row)
        record_figures(
            backend=name,
            records=n,
            operation=step,
            records_per_s=row["records_per_s"],
            seconds=row["seconds"],
            peak_rss_mib=row["peak_rss_mib"],
            exported=row["records"],
        )
    export_bytes = (tmp_path / "g" / "records.jsonl").stat().st_size
    record_figures(
        backend=name,
        records=n,
        operation="fill",
        seconds=round(fill_s, 1),
        export_mib=round(export_bytes / 2**20, 1),
    )
    print(
        f"\n{name} n={n}: "
        + ", ".join(f"{k} {v['records_per_s']}/s {v['peak_rss_mib']} MiB" for k, v in rows.items())
    )
