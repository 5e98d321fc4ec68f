"""`secure-aiaas audit init|verify`."""

from __future__ import annotations

import typer

from secure_aiaas.cli._common import JsonOpt, emit, fail, run_service_call, settings

app = typer.Typer(help="The tamper-evident audit store.", no_args_is_help=True)


@app.command("init")
def init(as_json: JsonOpt = False) -> None:
    """Create the audit store's tables (idempotent)."""
    from secure_aiaas.audit import SqlAuditStore
    from secure_aiaas.storage import redacted

    cfg = settings()
    store = SqlAuditStore(cfg.resolved_audit_url())
    run_service_call(store.create_schema)
    seq, _ = store.head()
    store.dispose()
    emit({"audit_url": redacted(cfg.resolved_audit_url()), "records": seq}, as_json,
         f"audit store ready at {redacted(cfg.resolved_audit_url())} ({seq} records)")


@app.command("verify")
def verify(as_json: JsonOpt = False) -> None:
    """Walk the chain and its signed checkpoints; exit 1 naming the first damage."""
    from secure_aiaas.audit import SqlAuditStore, verify_chain
    from secure_aiaas.crypto.keystore import known_audit_public_keys

    cfg = settings()
    store = SqlAuditStore(cfg.resolved_audit_url())
    try:
        report = verify_chain(store.iter_records(), store.checkpoints(),
                              known_audit_public_keys(cfg.keys_dir))
    finally:
        store.dispose()
    result = {"ok": report.ok, "records": report.records, "checkpoints": report.checkpoints,
              "last_seq": report.last_seq, "warnings": report.warnings,
              "damage": None if report.damage is None else {
                  "kind": report.damage.kind, "seq": report.damage.seq,
                  "message": report.damage.message}}
    if report.damage is not None:
        if as_json:
            emit(result, True, "")
            raise typer.Exit(1)
        fail(f"TAMPERED ({report.damage.kind}) at record {report.damage.seq}: "
             f"{report.damage.message}")
    emit(result, as_json, f"audit chain intact: {report.records} records, "
         f"{report.checkpoints} signed checkpoints"
         + "".join(f"\nwarning: {w}" for w in report.warnings))
