"""Per-tenant chains, tenant checkpoints, retention purges, legal holds and key rotation, on
real SQLite and real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from secure_aiaas.audit import SqlAuditStore, verify_store
from secure_aiaas.audit.chain import GLOBAL, tenant_genesis
from secure_aiaas.audit.offline import load_public_keys, verify_export
from secure_aiaas.audit.retention import purge, set_legal_hold, set_retention
from secure_aiaas.crypto import ServerKeys, init_keys, load_keys
from secure_aiaas.crypto.keystore import (
    AUDIT_SIGNING_FILE,
    known_audit_public_keys,
    public_key_pem,
)
from tests.compliance.conftest import TENANTS, export, fill
from tests.conftest import REPO
from tests.support.tamper import tamper


def sql(store: SqlAuditStore, statement: str, **params: Any) -> None:
    tamper(store, statement, **params)  # below the store's API, on purpose


def test_each_tenant_forms_its_own_chain(
    store: SqlAuditStore, keys: ServerKeys, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 60)
    for tenant in TENANTS:
        records = list(store.iter_records(tenant=tenant))
        assert len(records) == 20
        assert records[0]["tenant_prev_hash"] == tenant_genesis(tenant)
        for prev, cur in pairwise(records):
            assert cur["tenant_prev_hash"] == prev["hash"]
        cps = store.checkpoints(tenant)
        assert cps and all(c.verify(keys.audit_public_key) for c in cps)
        assert cps[-1].head_hash == records[-1]["hash"]
    assert store.checkpoints(GLOBAL)[-1].seq == 60
    assert verify_store(store, public_keys).ok


def test_tenant_link_tampering_is_detected(
    store: SqlAuditStore, keys: ServerKeys, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 30)
    sql(store, "UPDATE audit_events SET tenant_prev_hash=:h WHERE seq=10", h="e" * 64)
    report = verify_store(store, public_keys)
    assert report.damage is not None and report.damage.seq == 10


def test_tenant_export_needs_no_other_tenant(
    store: SqlAuditStore, keys: ServerKeys, tmp_path: Path, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 90)
    manifest = export(store, keys, tmp_path / "e", tenant="medco")
    lines = (tmp_path / "e" / "records.jsonl").read_text().splitlines()
    assert manifest["count"] == len(lines) == 30
    assert {json.loads(line)["record"]["tenant"] for line in lines} == {"medco"}
    assert manifest["genesis"] is True
    assert verify_export(tmp_path / "e", public_keys).ok


def test_purge_keeps_chains_verifiable(
    store: SqlAuditStore, keys: ServerKeys, tmp_path: Path, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 60, day=1)
    fill(store, keys, 30, day=20, start=60)
    set_retention(store, "acme", 10, "2026-01-25T00:00:00+00:00")
    results = purge(
        store,
        now="2026-01-25T00:00:00+00:00",
        signing_key=keys.audit_signing_key,
        key_id=keys.audit_key_id,
    )
    assert [(r.tenant, r.count) for r in results] == [("acme", 20)]
    store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, "2026-01-25T00:00:01")
    tombs = [r for r in store.iter_records(tenant="acme") if r["details"] is None]
    assert len(tombs) == 20 and all(r["subject"] is None and r["route"] is None for r in tombs)
    purge_record = [r for r in store.iter_records() if r["action"] == "audit.purge"]
    assert len(purge_record) == 1
    details = json.loads(purge_record[0]["details"])["purge"]
    assert details["last_purged_hash"] == tombs[-1]["hash"] and details["count"] == 20
    report = verify_store(store, public_keys)
    assert report.ok and report.tombstones == 20, report.damage
    export(store, keys, tmp_path / "e", tenant="acme")
    checked = verify_export(tmp_path / "e", public_keys)
    assert checked.ok and checked.tombstones == 20, checked.findings
    export(store, keys, tmp_path / "g", tenant=None, fmt="csv")
    assert verify_export(tmp_path / "g", public_keys).ok


def test_tombstone_without_signed_purge_is_tampering(
    store: SqlAuditStore, keys: ServerKeys, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 30)
    sql(store, "UPDATE audit_events SET details=NULL, subject=NULL WHERE seq=7")
    report = verify_store(store, public_keys)
    assert report.damage is not None and (report.damage.kind, report.damage.seq) == ("edited", 7)


def test_forged_purge_signature_is_detected(
    store: SqlAuditStore, keys: ServerKeys, public_keys: dict[str, Any]
) -> None:
    fill(store, keys, 30)
    purge(
        store,
        now="2026-03-01T00:00:00+00:00",
        signing_key=keys.audit_signing_key,
        key_id=keys.audit_key_id,
        tenant="acme",
        cutoff="2026-01-01T00:00:20",
    )
    # Widen the purge after the fact (to hide more records): its signature no longer holds.
    with store._reader.connect() as conn:
        seq, raw = conn.execute(
            text("SELECT seq, details FROM audit_events WHERE action='audit.purge'")
        ).one()
    details = json.loads(raw)
    details["purge"]["last_seq"] = 30
    sql(store, "UPDATE audit_events SET details=:d WHERE seq=:s", d=json.dumps(details), s=seq)
    report = verify_store(store, public_keys)
    assert report.damage is not None and report.damage.seq == seq


def test_legal_hold_stops_purges(store: SqlAuditStore, keys: ServerKeys) -> None:
    fill(store, keys, 30)
    set_retention(store, "acme", 1, "2026-03-01T00:00:00+00:00")
    set_legal_hold(store, "acme", True, "2026-03-01T00:00:00+00:00")
    results = purge(
        store,
        now="2026-03-01T00:00:00+00:00",
        signing_key=keys.audit_signing_key,
        key_id=keys.audit_key_id,
    )
    assert [(r.tenant, r.count, r.skipped) for r in results] == [("acme", 0, "legal hold")]
    # An explicit cutoff does not bypass the hold either.
    forced = purge(
        store,
        now="2026-03-01T00:00:00+00:00",
        signing_key=keys.audit_signing_key,
        key_id=keys.audit_key_id,
        tenant="acme",
        cutoff="2030-01-01",
    )
    assert forced[0].skipped == "legal hold"
    assert all(r["details"] is not None for r in store.iter_records())
    set_legal_hold(store, "acme", False, "2026-03-02T00:00:00+00:00")
    after = purge(
        store,
        now="2026-03-02T00:00:00+00:00",
        signing_key=keys.audit_signing_key,
        key_id=keys.audit_key_id,
    )
    assert after[0].count == 10


def test_exports_signed_before_rotation_still_verify(
    store: SqlAuditStore, keys_dir: Path, tmp_path: Path
) -> None:
    old = load_keys(keys_dir)
    fill(store, old, 40)
    export(store, old, tmp_path / "before", tenant="acme")
    # Rotate: keep the old public half as audit-public-<id>.pem, make a new signing key.
    (keys_dir / f"audit-public-{old.audit_key_id}.pem").write_bytes(
        public_key_pem(old.audit_public_key)
    )
    os.remove(keys_dir / AUDIT_SIGNING_FILE)
    init_keys(keys_dir)
    new = load_keys(keys_dir)
    assert new.audit_key_id != old.audit_key_id
    fill(store, new, 40, start=40)
    export(store, new, tmp_path / "after", tenant="acme")
    bundle = tmp_path / "published.pem"
    bundle.write_bytes(
        b"".join(public_key_pem(k) for k in known_audit_public_keys(keys_dir).values())
    )
    published = load_public_keys([bundle])
    assert len(published) == 2
    assert verify_export(tmp_path / "before", published).ok
    after = verify_export(tmp_path / "after", published)
    assert after.ok  # its checkpoints were signed by both keys
    keys_of = {
        c["key_id"]
        for c in json.loads((tmp_path / "after" / "manifest.json").read_text())["checkpoints"]
    }
    assert keys_of == {old.audit_key_id, new.audit_key_id}
    assert verify_store(store, published).ok
    # Only the new key: the old export's signature cannot be checked.
    only_new = {new.audit_key_id: new.audit_public_key}
    assert not verify_export(tmp_path / "before", only_new).ok


def test_offline_verifier_needs_no_database_or_network(
    store: SqlAuditStore, keys: ServerKeys, tmp_path: Path, keys_dir: Path
) -> None:
    fill(store, keys, 30)
    export(store, keys, tmp_path / "e", tenant="acme")
    pem = tmp_path / "audit.pem"
    pem.write_bytes(public_key_pem(keys.audit_public_key))
    script = (
        "import sys, socket\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sqlalchemy', 'psycopg', 'httpx', 'fastapi',\n"
        "                                  'pydantic', 'typer'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "def no_network(*a, **k):\n"
        "    raise OSError('network blocked')\n"
        "socket.socket = no_network\n"
        "socket.create_connection = no_network\n"
        "from secure_aiaas.audit.offline import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "e"), "--public-key", str(pem), "--json"],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["ok"] is True
    # Same tool, tampered export: exit 1 with the finding.
    path = tmp_path / "e" / "records.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"status":200', b'"status":201', 1))
    bad = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "e"), "--public-key", str(pem)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert bad.returncode == 1 and "edited record" in bad.stdout


@pytest.mark.parametrize("hold", [False, True])
def test_cli_retention_hold_purge_are_audited(
    hold: bool, tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    from tests.conftest import run_cli, service_env

    env = service_env(tmp_path, keys_dir, policy_dir)
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'data' / 'audit.db'}")
    store.create_schema()
    fill(store, load_keys(keys_dir), 30)
    assert (
        run_cli(env, "audit", "retention", "set", "--tenant", "acme", "--days", "5").returncode == 0
    )
    if hold:
        assert run_cli(env, "audit", "hold", "on", "--tenant", "acme").returncode == 0
    dry = run_cli(env, "audit", "purge", "--dry-run", "--json")
    assert json.loads(dry.stdout)["results"][0]["count"] == (0 if hold else 10)
    done = run_cli(env, "audit", "purge", "--json")
    result = json.loads(done.stdout)["results"][0]
    assert (result["count"], result["skipped"]) == ((0, "legal hold") if hold else (10, None))
    actions = [r["action"] for r in store.iter_records() if r["tenant"] == "acme"]
    assert "audit.retention" in actions
    assert ("audit.hold" in actions) is hold
    assert ("audit.purge" in actions) is not hold
    verified = run_cli(env, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    store.dispose()
