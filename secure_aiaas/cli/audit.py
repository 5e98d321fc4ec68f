"""`secure-aiaas audit init|verify|export|verify-export|report|retention|hold|purge|public-keys`.

``verify-export`` is the auditor's command: it reads only the export directory and the
public key file(s), never the settings' database or the network.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from secure_aiaas.cli._common import (
    JsonOpt,
    admin_action,
    emit,
    fail,
    run_service_call,
    settings,
)

if TYPE_CHECKING:  # heavy imports stay lazy: verify-export must not need a database driver
    from secure_aiaas.audit.store import SqlAuditStore
    from secure_aiaas.crypto import ServerKeys

app = typer.Typer(help="The tamper-evident audit store.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention periods per tenant.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")

TenantOpt = Annotated[str | None, typer.Option("--tenant", help="one tenant's chain")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="ISO time, inclusive")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="ISO time, exclusive")]


def _store() -> SqlAuditStore:
    from secure_aiaas.audit import SqlAuditStore

    store = SqlAuditStore(settings().resolved_audit_url())
    run_service_call(store.create_schema)
    return store


def _keys() -> ServerKeys:
    from secure_aiaas.crypto import load_keys

    keys: ServerKeys = run_service_call(load_keys, settings().keys_dir)
    return keys


@app.command("init")
def init(as_json: JsonOpt = False) -> None:
    """Create the audit store's tables (idempotent)."""
    from secure_aiaas.storage import redacted

    cfg = settings()
    store = _store()
    seq, _ = store.head()
    store.dispose()
    emit(
        {"audit_url": redacted(cfg.resolved_audit_url()), "records": seq},
        as_json,
        f"audit store ready at {redacted(cfg.resolved_audit_url())} ({seq} records)",
    )


@app.command("verify")
def verify(as_json: JsonOpt = False) -> None:
    """Walk the chains, checkpoints and purges; exit 1 naming the first damage."""
    from secure_aiaas.audit import SqlAuditStore, verify_store
    from secure_aiaas.crypto.keystore import known_audit_public_keys

    cfg = settings()
    store = SqlAuditStore(cfg.resolved_audit_url())
    try:
        report = verify_store(store, known_audit_public_keys(cfg.keys_dir))
    finally:
        store.dispose()
    result = {
        "ok": report.ok,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "last_seq": report.last_seq,
        "purged": report.tombstones,
        "warnings": report.warnings,
        "orphaned_attempts": {
            "count": len(report.orphaned_attempts),
            "seqs": report.orphaned_attempts[:100],
        },
        "damage": None
        if report.damage is None
        else {
            "kind": report.damage.kind,
            "seq": report.damage.seq,
            "message": report.damage.message,
        },
    }
    if report.damage is not None:
        if as_json:
            emit(result, True, "")
            raise typer.Exit(1)
        fail(
            f"TAMPERED ({report.damage.kind}) at record {report.damage.seq}: "
            f"{report.damage.message}"
        )
    orphans = report.orphaned_attempts
    emit(
        result,
        as_json,
        f"audit chain intact: {report.records} records, "
        f"{report.checkpoints} signed checkpoints"
        + (
            f"\norphaned attempts (interrupted requests, not damage): {len(orphans)} "
            f"(records {', '.join(map(str, orphans[:10]))}{', ...' if len(orphans) > 10 else ''})"
            if orphans
            else ""
        )
        + "".join(f"\nwarning: {w}" for w in report.warnings),
    )


def _export(
    out: Path, since: str | None, until: str | None, tenant: str | None, fmt: str
) -> dict[str, Any]:
    from secure_aiaas.audit import utc_now
    from secure_aiaas.audit.export import ExportRequest, export_range

    obj = f"audit:tenant:{tenant}" if tenant else "audit:all"
    with admin_action("audit.export", obj, tenant=tenant) as facts:
        store, keys = _store(), _keys()
        try:
            manifest = export_range(
                store,
                out,
                ExportRequest(since, until, tenant, fmt),
                signing_key=keys.audit_signing_key,
                key_id=keys.audit_key_id,
                created_at=utc_now(),
            )
        finally:
            store.dispose()
        facts["export"] = {
            "tenant": tenant,
            "count": manifest["count"],
            "first_seq": manifest["first_seq"],
            "last_seq": manifest["last_seq"],
            "manifest_sha256": manifest["manifest_sha256"],
        }
    return manifest


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="directory to write")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    tenant: TenantOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl | csv")] = "jsonl",
    as_json: JsonOpt = False,
) -> None:
    """Export a range with a manifest signed by the audit key (verify with verify-export)."""
    if fmt not in ("jsonl", "csv"):
        fail("--format must be jsonl or csv")
    if output.exists() and any(output.iterdir()):
        fail(f"{output} is not empty")
    manifest = _export(output, since, until, tenant, fmt)
    summary = {
        k: manifest[k]
        for k in (
            "tenant",
            "count",
            "first_seq",
            "last_seq",
            "first_hash",
            "last_hash",
            "manifest_sha256",
        )
    }
    emit(
        {"output": str(output), **summary},
        as_json,
        f"exported {manifest['count']} records (seq {manifest['first_seq']}.."
        f"{manifest['last_seq']}) to {output}; manifest sha256 {manifest['manifest_sha256']}",
    )


@app.command("verify-export")
def verify_export(
    export_dir: Path,
    public_key: Annotated[
        list[Path], typer.Option("--public-key", help="PEM file(s) with the published audit key(s)")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Verify an export offline (no server, database or network); exit 1 on tampering."""
    from secure_aiaas.audit.offline import load_public_keys, render
    from secure_aiaas.audit.offline import verify_export as run

    report = run(export_dir, load_public_keys(public_key))
    typer.echo(render(report, as_json=as_json), err=not report.ok and not as_json)
    if not report.ok:
        raise typer.Exit(1)


@app.command("report")
def report(
    tenant: Annotated[str, typer.Option("--tenant", help="the tenant reported on")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    export_dir: Annotated[
        Path | None,
        typer.Option("--export-dir", help="keep the export the report is computed from here"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compliance report (HTML with charts) computed from a fresh, verified export."""
    from secure_aiaas.audit.offline import verify_export as run
    from secure_aiaas.audit.report import build_report
    from secure_aiaas.crypto.keystore import known_audit_public_keys

    with tempfile.TemporaryDirectory(prefix="saiaas-report-") as tmp:
        target = export_dir or Path(tmp) / "export"
        manifest = _export(target, since, until, tenant, "jsonl")
        checked = run(target, known_audit_public_keys(settings().keys_dir))
        if not checked.ok:
            fail(
                "the export does not verify; no report written: "
                + "; ".join(f.message for f in checked.findings)
            )
        summary = build_report(target, output, manifest_sha256=manifest["manifest_sha256"])
    emit(
        {"output": str(output), "manifest_sha256": manifest["manifest_sha256"], **summary},
        as_json,
        f"report for {tenant} ({summary['records']} records) written to {output}",
    )


@retention_app.command("set")
def retention_set(
    tenant: Annotated[str, typer.Option("--tenant")],
    days: Annotated[int | None, typer.Option("--days", help="omit: keep for ever")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a tenant's retention period in days."""
    from secure_aiaas.audit import utc_now
    from secure_aiaas.audit.retention import set_retention

    if days is not None and days < 1:
        fail("retention must be at least one day")
    with admin_action(
        "audit.retention", f"audit:tenant:{tenant}", tenant=tenant, details={"retention_days": days}
    ):
        store = _store()
        try:
            run_service_call(set_retention, store, tenant, days, utc_now())
        finally:
            store.dispose()
    emit(
        {"tenant": tenant, "retention_days": days},
        as_json,
        f"retention of {tenant}: {days if days is not None else 'for ever'} days",
    )


@retention_app.command("show")
def retention_show(as_json: JsonOpt = False) -> None:
    """Retention periods and legal holds."""
    from dataclasses import asdict

    from secure_aiaas.audit.retention import list_retention

    store = _store()
    rules = [asdict(r) for r in list_retention(store)]
    store.dispose()
    emit(
        {"retention": rules},
        as_json,
        "\n".join(
            f"{r['tenant']}\t{r['retention_days'] or 'for ever'}\t"
            f"{'LEGAL HOLD' if r['legal_hold'] else ''}"
            for r in rules
        )
        or "no retention rules",
    )


@app.command("hold")
def hold(
    state: Annotated[str, typer.Argument(help="on | off")],
    tenant: Annotated[str, typer.Option("--tenant")],
    as_json: JsonOpt = False,
) -> None:
    """Put a legal hold on a tenant (no purge while on) or lift it."""
    from secure_aiaas.audit import utc_now
    from secure_aiaas.audit.retention import set_legal_hold

    if state not in ("on", "off"):
        fail("state must be on or off")
    with admin_action(
        "audit.hold", f"audit:tenant:{tenant}", tenant=tenant, details={"legal_hold": state == "on"}
    ):
        store = _store()
        try:
            run_service_call(set_legal_hold, store, tenant, state == "on", utc_now())
        finally:
            store.dispose()
    emit(
        {"tenant": tenant, "legal_hold": state == "on"}, as_json, f"legal hold on {tenant}: {state}"
    )


@app.command("purge")
def purge(
    tenant: TenantOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count only")] = False,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="purge records older than this ISO time instead of the retention period",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Empty records past retention into tombstones, with a signed purge record."""
    from dataclasses import asdict

    from secure_aiaas.audit import utc_now
    from secure_aiaas.audit.retention import purge as run

    def purge_now() -> list[Any]:
        store, keys = _store(), _keys()
        try:
            done: list[Any] = run_service_call(
                run,
                store,
                now=utc_now(),
                signing_key=keys.audit_signing_key,
                key_id=keys.audit_key_id,
                tenant=tenant,
                dry_run=dry_run,
                cutoff=before,
            )
            return done
        finally:
            store.dispose()

    if dry_run:
        results = purge_now()
    else:
        obj = f"audit:tenant:{tenant}" if tenant else "audit:all"
        with admin_action(
            "audit.purge-run", obj, tenant=tenant, details={"before": before is not None}
        ) as facts:
            results = purge_now()
            facts["purged"] = {r.tenant: r.count for r in results if r.count}
    rows = [asdict(r) for r in results]
    emit(
        {"dry_run": dry_run, "results": rows},
        as_json,
        "\n".join(
            f"{r['tenant']}: {r['skipped'] or ('would purge ' if dry_run else 'purged ') + str(r['count'])}"
            for r in rows
        )
        or "no tenant has a retention period",
    )


@app.command("public-keys")
def public_keys(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file to write")] = None,
) -> None:
    """Every audit public key (current and retired) as one PEM bundle."""
    from secure_aiaas.crypto.keystore import known_audit_public_keys, public_key_pem

    keys = known_audit_public_keys(settings().keys_dir)
    bundle = b"".join(public_key_pem(k) for _, k in sorted(keys.items()))
    if output:
        output.write_bytes(bundle)
    else:
        typer.echo(bundle.decode(), nl=False)
