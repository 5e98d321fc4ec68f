"""`secure-aiaas policy check|publish|published|explain`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from secure_aiaas.cli._common import JsonOpt, admin_action, emit, fail, run_service_call, settings

if TYPE_CHECKING:
    from secure_aiaas.policy.loader import PolicySource

app = typer.Typer(
    help="Access policy: the policy directory, and the version published to replicas.",
    no_args_is_help=True,
)


@app.command("check")
def check(as_json: JsonOpt = False) -> None:
    """Validate the policy directory; prints `file:line: reason` per problem."""
    from secure_aiaas.privacy import validate_privacy_file

    cfg = settings()
    _contents, source, errors = _checked_policy()
    privacy_file = cfg.policy_dir / cfg.privacy.profiles_file
    errors.extend(validate_privacy_file(privacy_file))
    if errors or source is None:
        _refuse(errors, as_json)
    emit(
        {
            "valid": True,
            "version": source.version,
            "rules": len(source.lines),
            "files": [*source.files, privacy_file.name],
        },
        as_json,
        f"policy OK: version {source.version}, {len(source.lines)} rules "
        f"({', '.join(source.files)}); {privacy_file.name} OK",
    )


def _checked_policy() -> tuple[dict[str, bytes], PolicySource | None, list[str]]:
    """The policy files' bytes, the policy they parse to, and every problem found (as
    ``policy check`` reports them; the registry's operator tenants included)."""
    from secure_aiaas.policy import PolicyValidationError
    from secure_aiaas.policy.loader import parse_policy, read_policy_files

    cfg = settings()
    contents: dict[str, bytes] = {}
    try:
        contents = read_policy_files(cfg.policy_dir, cfg.policy.model_file, cfg.policy.policy_file)
        source = parse_policy(contents, cfg.policy.model_file, cfg.policy.policy_file)
    except PolicyValidationError as exc:
        return contents, None, list(exc.errors)
    return contents, source, _operator_grant_problems(source)


def _refuse(errors: list[str], as_json: bool) -> NoReturn:
    if as_json:
        emit({"valid": False, "errors": errors}, True, "")
        raise typer.Exit(1)
    fail("\n".join(errors))


def _operator_grant_problems(source: PolicySource) -> list[str]:
    """Global roles granted inside customer tenants (needs the registry; skipped without)."""
    from secure_aiaas.auth import Registry
    from secure_aiaas.crypto import load_keys
    from secure_aiaas.errors import ServiceError
    from secure_aiaas.policy.loader import operator_grant_problems

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


@app.command("publish")
def publish(as_json: JsonOpt = False) -> None:
    """Validate the policy directory and make it the version every replica enforces."""
    from secure_aiaas.crypto import load_keys
    from secure_aiaas.policy import Announcer, notice_channel, published_store

    cfg = settings()
    contents, source, errors = _checked_policy()
    if errors or source is None:
        _refuse(errors, as_json)  # nothing stored, nothing announced
    store = published_store(cfg, run_service_call(load_keys, cfg.keys_dir).data_key)
    announcer = (
        Announcer(
            cfg.redis_url,
            notice_channel(cfg.scheduling.key_prefix),
            timeout_s=cfg.scheduling.redis_timeout_s,
        )
        if cfg.redis_url
        else None
    )
    try:
        run_service_call(store.create_schema)
        current = run_service_call(store.current)
        details: dict[str, object] = {
            "version": source.version,
            "previous": current[1] if current else None,
            "files": list(source.files),
        }
        # Attempt recorded first; the facts below (never the rules) go into the outcome.
        with admin_action("policy.publish", "admin:policy", tenant=None, details=details) as facts:
            result = run_service_call(
                store.publish,
                contents,
                model_file=cfg.policy.model_file,
                policy_file=cfg.policy.policy_file,
                publisher=_publisher(),
            )
            facts.update(previous=result.previous, publication=result.seq, changed=result.changed)
            heard = announcer.announce(result.version) if announcer is not None else None
            facts["notified"] = heard
    finally:
        store.dispose()
        if announcer is not None:
            announcer.close()
    check_s = cfg.policy.published_check_s
    if heard is None:
        reach = f"replicas pick it up at their next check (within {check_s:g} s)" + (
            "; Redis could not be reached"
            if cfg.redis_url
            else " (no SAIAAS_REDIS_URL: no notice sent)"
        )
    else:
        reach = f"notice heard by {heard} subscriber(s)"
    if result.changed:
        text = (
            f"published version {result.version} (publication {result.seq}, previous "
            f"{result.previous or 'none'}); {reach}"
        )
    else:
        text = f"version {result.version} is already the published version: nothing changed"
    emit(
        {
            "version": result.version,
            "previous": result.previous,
            "publication": result.seq,
            "changed": result.changed,
            "notified": heard,
            "files": list(source.files),
        },
        as_json,
        text,
    )


def _publisher() -> str:
    """Who publishes, as stored with the publication: the OS account, and ``--actor``."""
    from secure_aiaas.cli._common import claimed_actor, os_account

    actor = claimed_actor()
    return f"os:{os_account()['user']}" + (f" actor:{actor}" if actor else "")


@app.command("published")
def published(
    limit: Annotated[int, typer.Option(min=1, help="how many, newest first")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List publications, newest first (version, when, who); exit 1 if one fails its check."""
    from dataclasses import asdict

    from secure_aiaas.crypto import load_keys
    from secure_aiaas.policy import published_store

    cfg = settings()
    store = published_store(cfg, run_service_call(load_keys, cfg.keys_dir).data_key)
    try:
        run_service_call(store.create_schema)
        history = run_service_call(store.history, limit)
    finally:
        store.dispose()
    emit(
        {"publications": [asdict(a) for a in history]},
        as_json,
        "\n".join(
            f"{a.seq}\t{a.version}\t{a.activated_at}\t{a.publisher}"
            f"{chr(9) + 'current' if a.current else ''}"
            f"{'' if a.intact else chr(9) + 'REFUSED: edited outside policy publish'}"
            for a in history
        )
        or "nothing published yet",
    )
    if not all(a.intact for a in history):
        raise typer.Exit(1)


@app.command("explain")
def explain(
    subject: str,
    tenant: str,
    obj: Annotated[str, typer.Argument(metavar="OBJECT")],
    action: str,
    role: Annotated[
        str | None,
        typer.Option(help="role to evaluate (default: the roles of the subject's active keys)"),
    ] = None,
    trust: Annotated[
        str | None, typer.Option(help="tenant trust (default: from the registry)")
    ] = None,
    published: Annotated[
        bool,
        typer.Option(
            "--published",
            help="explain the published version (what replicas enforce) instead of the files",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Allow or deny, and the policy line that decided."""
    from secure_aiaas.policy import PolicyEngine, PolicyValidationError

    cfg = settings()
    if published:
        from secure_aiaas.crypto import load_keys
        from secure_aiaas.policy import PublishedOrigin, published_store

        store = published_store(cfg, run_service_call(load_keys, cfg.keys_dir).data_key)
        run_service_call(store.create_schema)
        engine = PolicyEngine(PublishedOrigin(store))
    else:
        engine = PolicyEngine(
            cfg.policy_dir, model_file=cfg.policy.model_file, policy_file=cfg.policy.policy_file
        )
    try:
        run_service_call(engine.load)
    except PolicyValidationError as exc:
        fail("\n".join(exc.errors))
    finally:
        engine.origin.close()
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
    roles = (
        [role]
        if role
        else sorted(
            {
                k.role
                for k in registry.list_api_keys(tenant)
                if k.subject == subject and k.revoked_at is None
            }
        )
    )
    if not roles:
        fail(f"{subject} holds no active key in {tenant}; pass --role to evaluate one")
    loaded = engine.loaded
    assert loaded is not None
    results: list[dict[str, Any]] = []
    for r in roles:
        decision = engine.decide_for(subject, r, tenant, trust, obj, action, operator=operator)
        results.append(
            {
                "role": r,
                "allowed": decision.allowed,
                "rule": list(decision.rule) if decision.rule else None,
                "source": loaded.rule_origin(decision.rule) if decision.rule else None,
                "policy_version": decision.policy_version,
            }
        )
    allowed = any(x["allowed"] for x in results)
    text = "\n".join(
        f"{'ALLOW' if x['allowed'] else 'DENY'} as {x['role']}: "
        + (
            f"{x['source']}: p, {', '.join(x['rule'])}"
            if x["rule"]
            else "no allow line matches (deny by default)"
        )
        for x in results
    )
    emit(
        {
            "subject": subject,
            "tenant": tenant,
            "trust": trust,
            "object": obj,
            "action": action,
            "allowed": allowed,
            "decisions": results,
        },
        as_json,
        text,
    )
