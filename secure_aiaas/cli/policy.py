"""`secure-aiaas policy check|explain`."""

from __future__ import annotations

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
    roles = [role] if role else None
    if roles is None or trust is None:
        from secure_aiaas.cli.tenants import _registry

        registry = _registry()
        if trust is None:
            trust = registry.get_tenant(tenant).trust
        if roles is None:
            roles = sorted({k.role for k in registry.list_api_keys(tenant)
                            if k.subject == subject and k.revoked_at is None})
    if not roles:
        fail(f"{subject} holds no active key in {tenant}; pass --role to evaluate one")
    loaded = engine.loaded
    assert loaded is not None
    results = []
    for r in roles:
        decision = engine.decide_for(subject, r, tenant, trust, obj, action)
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
