"""`secure-aiaas tenant ...` and `secure-aiaas apikey ...`."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from secure_aiaas.auth import Registry

from secure_aiaas.cli._common import JsonOpt, admin_action, emit, fail, run_service_call, settings

tenant_app = typer.Typer(help="Tenants (Casbin domains).", no_args_is_help=True)
apikey_app = typer.Typer(
    help="API keys (shown once, stored only as an HMAC).", no_args_is_help=True
)


def _registry() -> Registry:
    from secure_aiaas.auth import Registry
    from secure_aiaas.crypto import load_keys

    cfg = settings()
    keys = run_service_call(load_keys, cfg.keys_dir)
    registry = Registry(cfg.resolved_database_url(), keys.apikey_hmac_key)
    run_service_call(registry.create_schema)
    return registry


def _policy_roles() -> set[str]:
    """Every role the policy directory names (a key's role must be one of them)."""
    from secure_aiaas.policy import PolicyValidationError, read_policy

    cfg = settings()
    try:
        source = read_policy(cfg.policy_dir, cfg.policy.model_file, cfg.policy.policy_file)
    except PolicyValidationError as exc:
        fail(
            "error: the policy is invalid, so roles cannot be checked: " + "; ".join(exc.errors[:3])
        )
    return source.roles()


@tenant_app.command("create")
def tenant_create(
    name: str,
    trust: Annotated[str, typer.Option(help="trusted | sensitive")] = "trusted",
    operator: Annotated[
        bool,
        typer.Option(
            "--operator",
            help="an operator tenant: runs the service; only its keys may hold "
            "global roles (security-admin, metrics-reader)",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant with a trust level."""
    registry = _registry()
    with admin_action(
        "tenant.create",
        f"tenant:{name}",
        tenant=name,
        details={"trust": trust, "operator": operator},
    ):
        tenant = run_service_call(registry.create_tenant, name, trust, operator=operator)
    emit(
        asdict(tenant),
        as_json,
        f"tenant {tenant.name} ({tenant.trust}{', operator' if tenant.operator else ''}) created",
    )


@tenant_app.command("set-limits")
def tenant_set_limits(
    name: str,
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="requests per minute, whole tenant")
    ] = None,
    key_rpm: Annotated[
        int | None, typer.Option("--key-rpm", help="requests per minute, per API key")
    ] = None,
    concurrent: Annotated[
        int | None, typer.Option("--concurrent", help="requests in flight")
    ] = None,
    priority: Annotated[int, typer.Option(help="queue priority (higher first)")] = 0,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="chat tokens (prompt + completion) per minute")
    ] = None,
    key_tpm: Annotated[
        int | None, typer.Option("--key-tpm", help="chat tokens per minute, per API key")
    ] = None,
    streams: Annotated[
        int | None, typer.Option("--streams", help="chat generations in flight")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a tenant's quotas and priority (omitted limits: none)."""
    from secure_aiaas.types import TenantLimits

    limits = TenantLimits(
        requests_per_minute=rpm,
        key_requests_per_minute=key_rpm,
        max_concurrent=concurrent,
        priority=priority,
        tokens_per_minute=tpm,
        key_tokens_per_minute=key_tpm,
        max_streams=streams,
    )
    registry = _registry()
    with admin_action("tenant.set-limits", f"tenant:{name}", tenant=name, details=asdict(limits)):
        tenant = run_service_call(registry.set_limits, name, limits)
    emit(asdict(tenant), as_json, f"tenant {name}: {asdict(tenant.limits)}")


@tenant_app.command("list")
def tenant_list(as_json: JsonOpt = False) -> None:
    """List tenants."""
    tenants = [asdict(t) for t in _registry().list_tenants()]
    emit(
        {"tenants": tenants},
        as_json,
        "\n".join(f"{t['name']}\t{t['trust']}\t{t['created_at']}" for t in tenants) or "no tenants",
    )


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="tenant the key acts in")],
    subject: Annotated[str, typer.Option(help="who holds the key")],
    role: Annotated[
        str, typer.Option(help="tenant-admin | user | he-user | auditor | security-admin")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once and cannot be shown again."""
    registry = _registry()
    roles = _policy_roles()
    with admin_action(
        "apikey.create", f"tenant:{tenant}", tenant=tenant, details={"role": role}
    ) as facts:
        api_key, info = run_service_call(
            registry.create_api_key, tenant, subject, role, roles=roles
        )
        facts["key_id"] = info.key_id
    emit(
        {
            "api_key": api_key,
            "key_id": info.key_id,
            "tenant": tenant,
            "subject": subject,
            "role": role,
        },
        as_json,
        f"key_id: {info.key_id}\napi_key: {api_key}\n(store it now: it is not shown again)",
    )


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, as_json: JsonOpt = False) -> None:
    """Revoke an API key (effective on the next request, on every replica)."""
    registry = _registry()
    owner = next((k for k in registry.list_api_keys() if k.key_id == key_id), None)
    if owner is None:
        fail(f"error: no API key {key_id!r}")
    with admin_action(
        "apikey.revoke", f"tenant:{owner.tenant}", tenant=owner.tenant, details={"key_id": key_id}
    ):
        info = run_service_call(registry.revoke_api_key, key_id)
    emit(asdict(info), as_json, f"{key_id} revoked")


@apikey_app.command("list")
def apikey_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (ids and holders; never the keys)."""
    keys = [asdict(k) for k in _registry().list_api_keys(tenant)]
    emit(
        {"api_keys": keys},
        as_json,
        "\n".join(
            f"{k['key_id']}\t{k['tenant']}\t{k['subject']}\t{k['role']}\t"
            f"{'revoked ' + k['revoked_at'] if k['revoked_at'] else 'active'}"
            for k in keys
        )
        or "no API keys",
    )
