"""CLI admin actions are audited write-ahead, in the affected tenant's chain, naming the OS
account (from the kernel, not $USER) and the optional --actor."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.audit import SqlAuditStore
from tests.conftest import run_cli, service_env
from tests.support.outage import Outage


def _records(env: dict[str, str]) -> list[dict[str, Any]]:
    store = SqlAuditStore(f"sqlite:///{Path(env['SAIAAS_DATA_DIR']) / 'audit.db'}")
    try:
        rows = list(store.iter_records())
    finally:
        store.dispose()
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows


@pytest.fixture
def env(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> dict[str, str]:
    values = service_env(tmp_path, keys_dir, policy_dir)
    values["USER"] = "someone-else"  # $USER is not who ran the command
    assert run_cli(values, "audit", "init").returncode == 0
    return values


def test_admin_actions_write_attempt_then_outcome_in_the_tenant_chain(env: dict[str, str]) -> None:
    assert run_cli(env, "--actor", "jane.ops", "tenant", "create", "acme").returncode == 0
    made = run_cli(
        env,
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--subject",
        "alice",
        "--role",
        "user",
        "--json",
    )
    key_id = json.loads(made.stdout)["key_id"]
    assert run_cli(env, "tenant", "set-limits", "acme", "--rpm", "10").returncode == 0
    assert run_cli(env, "apikey", "revoke", key_id).returncode == 0
    assert (
        run_cli(env, "audit", "retention", "set", "--tenant", "acme", "--days", "30").returncode
        == 0
    )
    assert run_cli(env, "audit", "hold", "on", "--tenant", "acme").returncode == 0
    rows = [r for r in _records(env) if r["route"].startswith("cli:")]
    actions = [(r["action"], r["decision"]) for r in rows]
    for action in (
        "tenant.create",
        "apikey.create",
        "tenant.set-limits",
        "apikey.revoke",
        "audit.retention",
        "audit.hold",
    ):
        assert (action, "attempt") in actions and (action, "allow") in actions
        assert actions.index((action, "attempt")) < actions.index((action, "allow"))
    assert all(r["tenant"] == "acme" for r in rows)  # the affected tenant's chain
    account = pwd.getpwuid(os.getuid()).pw_name
    for row in rows:
        assert row["subject"] == f"os:{account}"
        assert row["details"]["by"]["os"] == {"uid": os.getuid(), "user": account}
    assert rows[0]["details"]["by"]["actor"] == "jane.ops"
    key_rows = [r for r in rows if r["action"] == "apikey.create" and r["decision"] == "allow"]
    assert key_rows[0]["details"]["key_id"] == key_id
    assert "saiaas_" not in json.dumps(rows)  # never the key itself


def test_a_refused_change_is_recorded_as_an_error(env: dict[str, str]) -> None:
    assert run_cli(env, "tenant", "create", "acme").returncode == 0
    again = run_cli(env, "tenant", "create", "acme")
    assert again.returncode == 1
    decisions = [r["decision"] for r in _records(env) if r["action"] == "tenant.create"]
    assert decisions == ["attempt", "allow", "attempt", "error"]


def test_nothing_changes_when_the_attempt_cannot_be_recorded(env: dict[str, str]) -> None:
    env = {**env, "SAIAAS_AUDIT__WRITE_TIMEOUT_S": "0.3"}
    url = f"sqlite:///{Path(env['SAIAAS_DATA_DIR']) / 'audit.db'}"
    with Outage(url):
        refused = run_cli(env, "tenant", "create", "acme")
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr
    listed = json.loads(run_cli(env, "tenant", "list", "--json").stdout)
    assert listed["tenants"] == []


def test_models_register_and_remove_are_audited(
    env: dict[str, str], tmp_path: Path, trained_models_dir: Path
) -> None:
    from secure_aiaas.inference.registry import ModelRegistry

    source = ModelRegistry(trained_models_dir).path("breast-cancer-lr", "1")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(name="my-lr", version="3", curve_file=None, assets={})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    registered = run_cli(
        env,
        "models",
        "register",
        "--manifest",
        str(tmp_path / "manifest.json"),
        "--weights",
        str(source / "weights.safetensors"),
        "--json",
    )
    assert registered.returncode == 0, registered.stderr
    removed = run_cli(env, "models", "remove", "my-lr", "--yes", "--json")
    assert removed.returncode == 0, removed.stderr
    rows = [
        (r["action"], r["decision"], r["object"])
        for r in _records(env)
        if r["action"].startswith("models.")
    ]
    assert rows == [
        ("models.register", "attempt", "model:my-lr"),
        ("models.register", "allow", "model:my-lr"),
        ("models.remove", "attempt", "model:my-lr"),
        ("models.remove", "allow", "model:my-lr"),
    ]
