"""Identities never borrow roles: subjects and roles are separate namespaces, global roles
live only in operator tenants (real Casbin on the real policy files, real registry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secure_aiaas.auth import Registry
from secure_aiaas.errors import InputError
from secure_aiaas.names import subject_problem
from secure_aiaas.policy import PolicyEngine, PolicyValidationError, read_policy
from secure_aiaas.types import Principal
from tests.conftest import REPO, run_cli, service_env

ROLE_LIKE = [
    "security-admin",
    "Security-Admin",
    "SECURITY_ADMIN",
    "security.admin",
    "securityadmin",
    "auditor",
    "Auditor",
    "metrics-reader",
    "metrics_reader",
    "tenant-admin",
    "he-user",
    "user",
    "USER",
    "ｕｓｅｒ",
]
RESERVED = [
    "role-admin",
    "system",
    "system.bot",
    "saiaas",
    "operator",
    "os-root",
    "admin",
    "anonymous",
    "subject.x",
]


@pytest.mark.parametrize("subject", ROLE_LIKE + RESERVED)
def test_subjects_named_like_a_role_or_reserved_are_refused(subject: str) -> None:
    assert subject_problem(subject) is not None


@pytest.mark.parametrize(
    "subject",
    ["alice", "jane.doe@example.com", "svc-ingest-01", "roland", "auditorium", "users-team"],
)
def test_ordinary_subjects_pass(subject: str) -> None:
    assert subject_problem(subject) is None


@pytest.fixture
def registry(tmp_path: Path, keys) -> Registry:  # type: ignore[no-untyped-def]
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", keys.apikey_hmac_key)
    reg.create_schema()
    reg.create_tenant("acme", "trusted")
    reg.create_tenant("platform", "trusted", operator=True)
    return reg


def test_registry_refuses_role_named_subjects_and_global_roles_outside_operators(
    registry: Registry,
) -> None:
    for subject in ("security-admin", "Auditor", "metrics_reader"):
        with pytest.raises(InputError, match="collides with a role"):
            registry.create_api_key("acme", subject, "user")
    with pytest.raises(InputError, match="operator tenant"):
        registry.create_api_key("acme", "sam", "security-admin")
    with pytest.raises(InputError, match="operator tenant"):
        registry.create_api_key("acme", "prom", "metrics-reader")
    with pytest.raises(InputError, match="not defined by the policy"):
        registry.create_api_key("acme", "bob", "superuser")
    key, _ = registry.create_api_key("platform", "sam", "security-admin")
    principal = registry.authenticate(key)
    assert principal.operator and principal.role == "security-admin"
    assert not registry.authenticate(registry.create_api_key("acme", "al", "user")[0]).operator


def test_declared_roles_are_policy_roles(policy_dir: Path) -> None:
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write(
            "role, data-steward\np, data-steward, *, privacy:scrub, infer, allow\n"
            "g, zoe, data-steward, acme\n"
        )
    source = read_policy(policy_dir, "model.conf", "policy.csv")
    assert "data-steward" in source.roles()
    eng = PolicyEngine(policy_dir)
    eng.load()
    assert eng.decide(_principal("ivy", "data-steward"), "privacy:scrub", "infer").allowed
    assert eng.decide(_principal("zoe", "auditor"), "privacy:scrub", "infer").allowed


def test_a_policy_defined_role_can_be_issued(registry: Registry) -> None:
    _, info = registry.create_api_key("acme", "ivy", "data-steward", roles={"data-steward"})
    assert info.role == "data-steward"
    with pytest.raises(InputError, match="collides with a role"):
        registry.create_api_key("acme", "Data_Steward", "user", roles={"data-steward"})


@pytest.fixture
def engine() -> PolicyEngine:
    eng = PolicyEngine(REPO / "policies")
    eng.load()
    return eng


def _principal(
    subject: str, role: str, tenant: str = "acme", *, operator: bool = False, trust: str = "trusted"
) -> Principal:
    return Principal(
        tenant=tenant,
        trust=trust,
        subject=subject,
        role=role,  # type: ignore[arg-type]
        key_id="k_test",
        operator=operator,
    )


@pytest.mark.parametrize(
    "subject", ["security-admin", "auditor", "metrics-reader", "tenant-admin", "he-user"]
)
def test_a_subject_named_like_a_role_gains_nothing(engine: PolicyEngine, subject: str) -> None:
    """Keys made before the registry refused such names (or by editing its database)."""
    for operator, tenant in ((False, "acme"), (True, "platform")):
        p = _principal(subject, "user", tenant, operator=operator)
        assert engine.roles_for(p) == ("user",)
        for obj, act in [
            ("admin:policy", "read"),
            ("metrics", "read"),
            ("audit:own", "read"),
            ("audit:tenant:medco", "read"),
            ("he-model:digits-mlp", "infer"),
            ("privacy:restore-key", "read"),
        ]:
            assert not engine.decide(p, obj, act).allowed, (subject, obj)


def test_global_roles_act_only_from_an_operator_tenant(engine: PolicyEngine) -> None:
    inside = _principal("sam", "security-admin", "platform", operator=True)
    outside = _principal("sam", "security-admin", "acme")
    assert engine.decide(inside, "audit:tenant:acme", "read").allowed
    assert engine.decide(inside, "admin:policy", "read").allowed
    assert not engine.decide(outside, "audit:tenant:medco", "read").allowed
    assert not engine.decide(outside, "admin:policy", "read").allowed
    assert engine.roles_for(outside) == ()


def test_grants_reach_only_their_subject_in_their_tenant(policy_dir: Path) -> None:
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, auditor, acme\ng, zoe, security-admin, acme\n")
    eng = PolicyEngine(policy_dir)
    eng.load()
    zoe = _principal("zoe", "user")
    # The auditor grant works; a global role granted in a customer tenant never applies.
    assert eng.roles_for(zoe) == ("user", "auditor")
    assert eng.decide(zoe, "audit:own", "read").allowed
    assert not eng.decide(zoe, "admin:policy", "read").allowed
    assert eng.roles_for(_principal("zoe", "user", "beta")) == ("user",)
    assert eng.roles_for(_principal("zoey", "user")) == ("user",)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("g, security-admin, user, acme", "collides with a role"),
        ("g, Auditor, user, acme", "collides with a role"),
        ("g, zoe, auditor, *", "names one tenant"),
        ("p, security-admin, *, admin:*, *, allow", "only in domain 'tenant:operator'"),
        ("p, metrics-reader, acme, metrics, read, allow", "only in domain 'tenant:operator'"),
        ("p, subject:auditor, acme, audit:own, read, allow", "collides with a role"),
        ("p, Alice, acme, identity, read, allow", "neither a role"),
        # A bare name is no longer a subject: refused, so a deny for one holder never lapses.
        ("p, alice, acme, identity, read, deny", "is not a role"),
        ("g, zoe, data-steward, acme", "is not a role"),
        ("role, securityadmin", "reads like) a built-in role"),
        ("role, Data-Steward", "not a role name"),
        ("p, user, nowhere:x, identity, read, allow", "not a tenant name"),
    ],
)
def test_policy_check_refuses_namespace_violations(
    policy_dir: Path, line: str, reason: str
) -> None:
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(PolicyValidationError) as info:
        read_policy(policy_dir, "model.conf", "policy.csv")
    assert any(reason in e for e in info.value.errors), info.value.errors


def test_policy_check_cli_refuses_a_global_role_granted_in_a_customer_tenant(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    env = service_env(tmp_path, keys_dir, policy_dir)
    for args in (("tenant", "create", "acme"), ("tenant", "create", "platform", "--operator")):
        assert run_cli(env, *args).returncode == 0
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, sam, security-admin, platform\n")
    assert run_cli(env, "policy", "check").returncode == 0
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, security-admin, acme\n")
    bad = run_cli(env, "policy", "check")
    assert bad.returncode == 1 and "not an operator tenant" in bad.stderr


def test_apikey_create_cli_refuses_role_named_subjects(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    env = service_env(tmp_path, keys_dir, policy_dir)
    run_cli(env, "tenant", "create", "acme")
    refused = run_cli(
        env,
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--subject",
        "security-admin",
        "--role",
        "user",
        "--json",
    )
    assert refused.returncode == 1 and "collides with a role" in refused.stderr
    refused = run_cli(
        env,
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--subject",
        "sam",
        "--role",
        "security-admin",
        "--json",
    )
    assert refused.returncode == 1 and "operator tenant" in refused.stderr
    listed = json.loads(run_cli(env, "apikey", "list", "--json").stdout)
    assert listed["api_keys"] == []
