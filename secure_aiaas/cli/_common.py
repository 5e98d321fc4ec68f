"""Shared CLI plumbing: settings, output, failures, and the audit trail of admin actions."""

from __future__ import annotations

import json
import os
import pwd
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from secure_aiaas.config import Settings, get_settings
from secure_aiaas.errors import ServiceError
from secure_aiaas.names import SUBJECT_RE

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def settings() -> Settings:
    return get_settings()


def emit(result: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(result, sort_keys=True) if as_json else text)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def run_service_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call into the service code; its errors become a clean message and exit code 1."""
    try:
        return func(*args, **kwargs)
    except ServiceError as exc:
        fail(f"error: {exc.public_message}")


ACTOR_ENV = "SAIAAS_ACTOR"


def claimed_actor() -> str | None:
    """Who the operator says they are: ``--actor`` (or ``SAIAAS_ACTOR``), if given."""
    return os.environ.get(ACTOR_ENV) or None


def os_account() -> dict[str, object]:
    """The OS account running the command: from the kernel (uid), not from $USER."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return {"uid": uid, "user": name}


@contextmanager
def admin_action(
    action: str, obj: str, *, tenant: str | None, details: dict[str, object] | None = None
) -> Iterator[dict[str, object]]:
    """Write-ahead audit of a change made from the command line.

    An *attempt* record is durably committed before the change (if it cannot be, the change
    is not made: exit 1); an *outcome* record (allow, or error) follows it. Both go into the
    affected tenant's chain (``tenant``; None: the global chain only) and name the actor as
    the OS account plus the optional ``--actor``. The block may add facts to the yielded
    dict (e.g. the new key's id) for the outcome record.
    """
    from secure_aiaas.audit import SqlAuditStore, utc_now
    from secure_aiaas.crypto.keystore import load_keys
    from secure_aiaas.types import AuditEvent

    cfg = settings()
    keys = run_service_call(load_keys, cfg.keys_dir)
    actor = claimed_actor()
    if actor is not None and not SUBJECT_RE.match(actor):
        fail("--actor: use letters, digits and . _ @ - (max 128)")
    account = os_account()
    who = {"os": account, **({"actor": actor} if actor else {})}
    request_id = uuid.uuid4().hex
    facts: dict[str, object] = dict(details or {})

    def event(decision: str, status: int, extra: dict[str, object]) -> AuditEvent:
        return AuditEvent(
            ts=utc_now(),
            request_id=request_id,
            method="CLI",
            route=f"cli:{action}",
            status=status,
            decision=decision,  # type: ignore[arg-type]
            latency_ms=0.0,
            tenant=tenant,
            subject=f"os:{account['user']}",
            action=action,
            object=obj,
            details={**extra, "by": who},
        )

    store = SqlAuditStore(cfg.resolved_audit_url(), timeout_s=cfg.audit.write_timeout_s)
    try:
        try:
            store.create_schema()
            store.append_batch([event("attempt", 0, dict(facts))])
        except ServiceError:
            fail("error: audit store unavailable; nothing was changed")
        try:
            yield facts
        except BaseException as exc:
            exit_code = getattr(exc, "exit_code", None)  # typer.Exit: fail() or a clean exit
            if exit_code == 0:
                outcome = event("allow", 0, facts)
            else:
                code = (
                    exc.code
                    if isinstance(exc, ServiceError)
                    else ("refused" if exit_code is not None else type(exc).__name__)
                )
                outcome = event("error", 1, {**facts, "error": code})
            _finish(store, keys, outcome)
            raise
        _finish(store, keys, event("allow", 0, facts))
    finally:
        store.dispose()


def _finish(store: Any, keys: Any, outcome: Any) -> None:
    """The outcome record, then a signed checkpoint (the CLI has no writer to do it later)."""
    from secure_aiaas.audit import utc_now

    store.append_batch([outcome])
    store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, utc_now())
