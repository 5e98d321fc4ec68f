"""`secure-aiaas policy check|explain`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from secure_aiaas.cli._common import JsonOpt, emit, fail, settings

app = typer.Typer(help="Access policy in the policy directory.", no_args_is_help=True)


@app.command("check")
def check(as_json: JsonOpt = False) -> None:
    """Validate the policy directory; prints `file:line: reason` per problem."""
    from secure_aiaas.policy import PolicyValidationError, read_policy
    from secure_aiaas.privacy import validate_privacy_file

    cfg = settings()
    errors: list[str] = []
    source = None
    try:
        source = read_policy(cfg.policy_dir, cfg.policy.model_file, cfg.policy.policy_file)
    except PolicyValidationError as exc:
        errors.extend(exc.errors)
    if source is not None:
        errors.extend(_operator_grant_problems(source))
    privacy_file = cfg.policy_dir / cfg.privacy.profiles_file
    errors.extend(validate_privacy_file(privacy_file))
    if errors or source is None:
        if as_json:
            emit({"valid": False, "errors": errors}, True, "")
            raise typer.Exit(1)
        fail("\n".join(errors))
    emit({"valid": True, "version": source.version, "rules": len(source.lines),
          "files": [*source.files, privacy_file.name]}, as_json,
         f"policy OK: version {source.version}, {len(source.lines)} rules "
         f"({', '.join(source.files)}); {privacy_file.name} OK")


def _operator_grant_problems(source: object) -> list[str]:
    """Global roles granted inside customer tenants (needs the registry; skipped without)."""
    from secure_aiaas.auth import Registry
    from secure_aiaas.crypto import load_keys
    from secure_aiaas.errors import ServiceError
    from secure_aiaas.policy.loader import PolicySource, operator_grant_problems

    assert isinstance(source, PolicySource)
    cfg = settings()
    url = cfg.resolved_database_url()
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        return []  # no registry yet (and checking must not create one)
    try:
        registry = Registry(cfg.resolved_database_url(), load_keys(cfg.keys_dir).apikey_hmac_key)
        try:
            operators = {t.name for t in registry.list_tenants() if t.operator}
        finally:
            registry.dispose()
    except (ServiceError, OSError):  # no registry here: the syntax-only check stands
        return []
    return operator_grant_problems(source, operators)


@app.command("explain")
def explain(
    subject: str,
    tenant: str,
    obj: Annotated[str, typer.Argument(metavar="OBJECT")],
    action: str,
    role: Annotated[str | None, typer.Option(help="role to evaluate (default: the roles of "
                                                   "the subject's active keys)")] = None,
    trust: Annotated[str | None, typer.Option(help="tenant trust (default: from the "
                                                    "registry)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Allow or deny, and the policy line that decided."""
    from secure_aiaas.policy import PolicyEngine

    cfg = settings()
    engine = PolicyEngine(cfg.policy_dir, model_file=cfg.policy.model_file,
                          policy_file=cfg.policy.policy_file)
    engine.load()
    from secure_aiaas.cli.tenants import _registry
    from secure_aiaas.errors import NotFoundError

    registry = _registry()
    operator = False
    try:
        record = registry.get_tenant(tenant)
        operator, trust = record.operator, trust or record.trust
    except NotFoundError:
        if trust is None:  # explaining a tenant that does not exist yet
            fail(f"tenant {tenant!r} is unknown; pass --trust to evaluate one")
    roles = [role] if role else sorted({k.role for k in registry.list_api_keys(tenant)
                                        if k.subject == subject and k.revoked_at is None})
    if not roles:
        fail(f"{subject} holds no active key in {tenant}; pass --role to evaluate one")
    loaded = engine.loaded
    assert loaded is not None
    results = []
    for r in roles:
        decision = engine.decide_for(subject, r, tenant, trust, obj, action,
                                     operator=operator)
        results.append({"role": r, "allowed": decision.allowed,
                        "rule": list(decision.rule) if decision.rule else None,
                        "source": loaded.rule_origin(decision.rule) if decision.rule else None,
                        "policy_version": decision.policy_version})
    allowed = any(x["allowed"] for x in results)
    text = "\n".join(
        f"{'ALLOW' if x['allowed'] else 'DENY'} as {x['role']}: "
        + (f"{x['source']}: p, {', '.join(x['rule'])}" if x["rule"]
           else "no allow line matches (deny by default)")
        for x in results)
    emit({"subject": subject, "tenant": tenant, "trust": trust, "object": obj,
          "action": action, "allowed": allowed, "decisions": results}, as_json, text)
