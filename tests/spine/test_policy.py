"""Authorization: the real Casbin enforcer on the real policy files, hot reload, explain."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from secure_aiaas.api.app import create_app
from secure_aiaas.config import Settings
from secure_aiaas.policy import PolicyEngine, PolicyValidationError, read_policy
from tests.conftest import (
    OPERATOR_TENANTS,
    REPO,
    Server,
    api_routes,
    run_cli,
    service_env,
    start_server,
)

# (subject, role, tenant, trust, object, action, expected)
TRUTH_TABLE = [
    ("alice", "user", "acme", "trusted", "identity", "read", True),
    ("alice", "user", "acme", "trusted", "model:digits-mlp", "infer", True),
    ("alice", "user", "acme", "trusted", "admin:policy", "read", False),
    ("alice", "user", "acme", "trusted", "he-model:digits-mlp", "infer", False),
    ("alice", "user", "acme", "trusted", "audit:own", "read", False),
    ("erin", "user", "medco", "sensitive", "model:digits-mlp", "infer", False),
    ("erin", "tenant-admin", "medco", "sensitive", "model:digits-mlp", "infer", False),
    ("frank", "he-user", "medco", "sensitive", "he-model:digits-mlp", "infer", True),
    ("frank", "he-user", "medco", "sensitive", "model:digits-mlp", "infer", False),
    ("carol", "tenant-admin", "acme", "trusted", "model:breast-cancer-lr", "infer", True),
    ("dave", "auditor", "acme", "trusted", "audit:own", "read", True),
    ("dave", "auditor", "acme", "trusted", "model:digits-mlp", "infer", False),
    ("sam", "security-admin", "platform", "trusted", "admin:policy", "read", True),
    ("sam", "security-admin", "platform", "trusted", "audit:acme", "read", True),
    # A global role outside an operator tenant is no role at all.
    ("sam", "security-admin", "acme", "trusted", "admin:policy", "read", False),
    ("sam", "security-admin", "acme", "trusted", "audit:tenant:medco", "read", False),
    ("prom", "metrics-reader", "platform", "trusted", "metrics", "read", True),
    ("prom", "metrics-reader", "acme", "trusted", "metrics", "read", False),
    # A subject named like a role gains nothing from its name.
    ("security-admin", "user", "acme", "trusted", "admin:policy", "read", False),
    ("security-admin", "user", "platform", "trusted", "admin:policy", "read", False),
    ("auditor", "user", "acme", "trusted", "audit:own", "read", False),
    ("metrics-reader", "user", "platform", "trusted", "metrics", "read", False),
    ("mallory", "no-such-role", "acme", "trusted", "identity", "read", True),
    ("mallory", "no-such-role", "acme", "trusted", "model:digits-mlp", "infer", False),
]


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    engine = PolicyEngine(REPO / "policies")
    engine.load()
    return engine


@pytest.mark.parametrize(
    ("subject", "role", "tenant", "trust", "obj", "act", "expected"), TRUTH_TABLE
)
def test_truth_table(
    engine: PolicyEngine,
    subject: str,
    role: str,
    tenant: str,
    trust: str,
    obj: str,
    act: str,
    expected: bool,
) -> None:
    decision = engine.decide_for(
        subject, role, tenant, trust, obj, act, operator=tenant in OPERATOR_TENANTS
    )
    assert decision.allowed is expected
    if expected:
        assert decision.rule is not None and decision.rule[-1] == "allow"


def test_sensitive_plaintext_denial_names_the_deny_rule(engine: PolicyEngine) -> None:
    decision = engine.decide_for("erin", "user", "medco", "sensitive", "model:x", "infer")
    assert decision.rule == ("*", "trust:sensitive", "model:*", "infer", "deny")
    assert engine.loaded is not None
    assert engine.loaded.rule_origin(decision.rule).startswith("policy.csv:")


def test_unloaded_engine_refuses(tmp_path: Path) -> None:
    from secure_aiaas.errors import PolicyUnavailableError

    engine = PolicyEngine(tmp_path)
    with pytest.raises(PolicyUnavailableError):
        engine.decide_for("a", "user", "acme", "trusted", "identity", "read")


def test_grouping_line_grants_a_role_in_one_tenant(policy_dir: Path) -> None:
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, auditor, acme\n")
    engine = PolicyEngine(policy_dir)
    engine.load()
    assert engine.decide_for("zoe", "user", "acme", "trusted", "audit:own", "read").allowed
    assert not engine.decide_for("zoe", "user", "other", "trusted", "audit:own", "read").allowed


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("p, user, *, identity, read", "needs 5 fields"),
        ("p, user, *, identity, read, maybe", "effect must be"),
        ("x, user, *, identity, read, allow", "unknown line type"),
        ("g, bob, user", "needs 3 fields"),
        ("p, user, , identity, read, allow", "empty field"),
        ("p, *, *, identity, read, allow", "duplicate of policy.csv:"),
    ],
)
def test_invalid_lines_report_file_and_line(policy_dir: Path, line: str, reason: str) -> None:
    path = policy_dir / "policy.csv"
    n_lines = len(path.read_text().splitlines())
    with path.open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(PolicyValidationError) as info:
        read_policy(policy_dir, "model.conf", "policy.csv")
    assert f"policy.csv:{n_lines + 1}: " in info.value.errors[0]
    assert reason in info.value.errors[0]


def test_policy_check_cli(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> None:
    env = service_env(tmp_path, keys_dir, policy_dir)
    ok = run_cli(env, "policy", "check", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("p, user, *, identity\n")
    bad = run_cli(env, "policy", "check")
    assert bad.returncode != 0
    assert "policy.csv:" in bad.stderr and "needs 5 fields" in bad.stderr
    (policy_dir / "model.conf").write_text("[request_definition]\nr = sub\n")
    bad_model = run_cli(env, "policy", "check")
    assert bad_model.returncode != 0 and "model.conf:0:" in bad_model.stderr


def test_policy_explain_cli(shared_server: Server) -> None:
    allow = shared_server.cli("policy", "explain", "alice", "acme", "model:digits-mlp", "infer")
    assert allow.returncode == 0
    assert "ALLOW as user: policy.csv:" in allow.stdout and "model:*, infer, allow" in allow.stdout
    deny = json.loads(
        shared_server.cli(
            "policy", "explain", "erin", "medco", "model:digits-mlp", "infer", "--json"
        ).stdout
    )
    assert deny["allowed"] is False
    assert deny["decisions"][0]["rule"] == ["*", "trust:sensitive", "model:*", "infer", "deny"]
    default = shared_server.cli("policy", "explain", "alice", "acme", "admin:policy", "read")
    assert "DENY as user: no allow line matches (deny by default)" in default.stdout


# Public: the probes and the API's own documentation (see api/docs.py).
PUBLIC_PATHS = {"/openapi.json", "/docs", "/redoc", "/docs-assets"}


def test_every_route_but_health_is_authorized(tmp_path: Path, policy_dir: Path) -> None:
    from secure_aiaas.api.middleware import UNAUDITED_PATHS, UNAUDITED_PREFIXES

    app = create_app(Settings(data_dir=tmp_path, keys_dir=tmp_path / "k", policy_dir=policy_dir))
    checked = 0
    for route in api_routes(app):
        path = getattr(route, "path", "")
        if path in PUBLIC_PATHS:
            # Public on purpose, and the middleware exempts exactly these (and the probes).
            assert path in UNAUDITED_PATHS or f"{path}/" in UNAUDITED_PREFIXES, path
            continue
        assert isinstance(route, APIRoute), f"non-API route {route} bypasses authorization"
        if route.path.startswith("/v2/health/"):
            continue
        gates = [
            d.call for d in route.dependant.dependencies if hasattr(d.call, "__authorization__")
        ]
        assert gates, f"{route.path} has no authorization dependency"
        checked += 1
    assert checked >= 3


def test_every_route_refuses_anonymous_and_unprivileged_callers(shared_server: Server) -> None:
    from secure_aiaas.api.app import create_app as make

    app = make(
        Settings(
            data_dir=shared_server.data_dir,
            keys_dir=shared_server.keys_dir,
            policy_dir=shared_server.policy_dir,
        )
    )
    for route in api_routes(app):
        if getattr(route, "path", "") in PUBLIC_PATHS:
            continue
        assert isinstance(route, APIRoute)
        if route.path.startswith("/v2/health/"):
            continue
        path = route.path.replace("{name}", "digits-mlp").replace("{version}", "1")
        for method in route.methods:
            anonymous = httpx.request(method, shared_server.base_url + path)
            assert anonymous.status_code == 401, (method, path)
    # The documentation is public and served by the service itself (no CDN).
    for path in ("/openapi.json", "/docs", "/docs-assets/swagger-ui-bundle.js"):
        assert httpx.get(shared_server.base_url + path).status_code == 200, path
    assert "cdn" not in httpx.get(shared_server.base_url + "/docs").text.lower()


def _wait_for(predicate: object, timeout: float = 2.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_policy_edit_takes_effect_within_two_seconds(server: Server) -> None:
    path = server.policy_dir / "policy.csv"
    with server.client("alice") as client:
        assert client.get("/v1/whoami").status_code == 200
        ready = client.get("/v2/health/ready").json()["checks"]["policy"]
        path.write_text(path.read_text() + "p, subject:alice, acme, identity, read, deny\n")
        _wait_for(lambda: client.get("/v1/whoami").status_code == 403)
        new_version = client.get("/v2/health/ready").json()["checks"]["policy"]["version"]
        assert new_version != ready["version"]


def test_invalid_edit_is_rejected_and_last_good_policy_stays(server: Server) -> None:
    path = server.policy_dir / "policy.csv"
    with server.client("alice") as client:
        version = client.get("/v2/health/ready").json()["checks"]["policy"]["version"]
        path.write_text(
            path.read_text().replace(
                "p, *, *, identity, read, allow", "p, *, *, identity, read, alow"
            )
        )
        _wait_for(
            lambda: client.get("/v2/health/ready").json()["checks"]["policy"]["rejected_edit"]
        )
        ready = client.get("/v2/health/ready").json()["checks"]["policy"]
        # Readiness is public: it says that an edit was rejected, never the error text.
        assert ready["version"] == version and "effect must be" not in json.dumps(ready)
        assert client.get("/v1/whoami").status_code == 200  # old policy still in force
    with server.client("secadmin") as admin:
        assert "effect must be" in admin.get("/v1/admin/policy").json()["last_error"]
    assert "policy.reload_rejected" in server.logs()


def test_service_does_not_start_with_an_unloadable_policy(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    (policy_dir / "policy.csv").write_text("p, user, *, identity, read, sometimes\n")
    env = service_env(tmp_path, keys_dir, policy_dir)
    srv = start_server(env, tmp_path / "server.log", wait=False)
    assert srv.process.wait(timeout=60) != 0
    assert "policy.csv:1" in srv.logs()


def test_admin_policy_route_is_for_security_admins_only(shared_server: Server) -> None:
    with (
        shared_server.client("secadmin") as admin,
        shared_server.client("acme-admin") as tenant_admin,
    ):
        response = admin.get("/v1/admin/policy")
        assert response.status_code == 200
        body = response.json()
        assert body["version"] and any(r["source"].startswith("policy.csv:") for r in body["rules"])
        assert tenant_admin.get("/v1/admin/policy").status_code == 403


def test_shipped_policy_dir_is_valid() -> None:
    source = read_policy(REPO / "policies", "model.conf", "policy.csv")
    assert len(source.lines) > 5
    assert {line.fields[-1] for line in source.lines if line.ptype == "p"} == {"allow", "deny"}
