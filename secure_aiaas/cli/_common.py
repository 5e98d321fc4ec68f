"""Shared CLI plumbing: settings, output, failures, recording admin actions."""

from __future__ import annotations

import getpass
import json
import uuid
from typing import Annotated, Any, NoReturn

import typer

from secure_aiaas.config import Settings, get_settings
from secure_aiaas.errors import ServiceError

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def settings() -> Settings:
    return get_settings()


def emit(result: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(result, sort_keys=True) if as_json else text)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def record_admin_action(action: str, obj: str, details: dict[str, object]) -> None:
    """Append an audit record for a change made from the command line."""
    from secure_aiaas.audit import SqlAuditStore, utc_now
    from secure_aiaas.types import AuditEvent

    cfg = settings()
    store = SqlAuditStore(cfg.resolved_audit_url(), timeout_s=cfg.audit.write_timeout_s)
    try:
        store.create_schema()
        store.append_batch([AuditEvent(
            ts=utc_now(), request_id=uuid.uuid4().hex, method="CLI", route=f"cli:{action}",
            status=0, decision="allow", latency_ms=0.0, subject=f"os:{getpass.getuser()}", action=action,
            object=obj, details=details)])
        # Sign the new head at once: the CLI has no long-lived writer to do it later.
        from secure_aiaas.crypto.keystore import load_keys

        keys = load_keys(cfg.keys_dir)
        store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, utc_now())
    finally:
        store.dispose()


def run_service_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call into the service code; its errors become a clean message and exit code 1."""
    try:
        return func(*args, **kwargs)
    except ServiceError as exc:
        fail(f"error: {exc.public_message}")


