"""Policy faults fail closed (the real app in-process, real Casbin on the real files)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.policy import PolicyEngine
from tests.conftest import STANDARD_KEYS, STANDARD_TENANTS
from tests.support.audit import stored_records
from tests.support.inprocess import InProcess, in_process, make_settings


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcess]:
    settings = make_settings(
        tmp_path,
        he={"enabled": False},
        privacy={"enabled": False},
        models_dir=tmp_path / "no-models",
        # 30 checks before it may age, so a busy machine (tests run side by side) cannot
        # starve the watcher into a stale policy before the test breaks the files.
        policy={"stale_after_s": 3.0, "reload_interval_s": 0.1},
    )
    with in_process(settings, STANDARD_TENANTS, STANDARD_KEYS) as running:
        yield running


def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_deleted_policy_stops_deciding_after_the_staleness_limit(app: InProcess) -> None:
    alice = app.headers("alice")
    policy = app.settings.policy_dir / "policy.csv"
    saved = policy.read_text()
    assert app.client.get("/v1/whoami", headers=alice).status_code == 200
    policy.unlink()
    _until(lambda: app.client.get("/v1/whoami", headers=alice).status_code == 503)
    refused = app.client.get("/v1/whoami", headers=alice)
    assert refused.json()["code"] == "policy_unavailable"
    ready = app.client.get("/v2/health/ready")
    assert ready.status_code == 503
    state = ready.json()["checks"]["policy"]
    assert state["fresh"] is False and state["rejected_edit"] is True
    assert "missing" not in ready.text  # no error text for anonymous callers
    policy.write_text(saved)  # restored: deciding again, no restart
    _until(lambda: app.client.get("/v1/whoami", headers=alice).status_code == 200)
    assert app.client.get("/v2/health/ready").status_code == 200


def test_a_broken_edit_is_refused_then_fails_closed(app: InProcess) -> None:
    alice = app.headers("alice")
    policy = app.settings.policy_dir / "policy.csv"
    policy.write_text(policy.read_text() + "p, user, *, identity\n")
    time.sleep(0.3)
    # Within the staleness limit the last good policy still decides ...
    assert app.client.get("/v1/whoami", headers=alice).status_code in (200, 503)
    # ... after it, nothing is decided on a policy that no longer matches its files.
    _until(lambda: app.client.get("/v1/whoami", headers=alice).status_code == 503)


def test_an_enforcer_fault_is_a_recorded_denial(
    app: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: PolicyEngine = app.pipeline.policy
    loaded = engine.loaded
    assert loaded is not None

    def broken(*_: Any) -> Any:
        raise RuntimeError("enforcer bug")

    monkeypatch.setattr(loaded.enforcer, "enforce_ex", broken)
    engine._cache.clear()
    response = app.client.get("/v1/whoami", headers=app.headers("alice"))
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    (record,) = stored_records(app.settings.resolved_audit_url(), response.headers["x-request-id"])
    assert record["decision"] == "deny" and record["rule"] == "policy-error"


def test_hidden_policy_files_are_never_loaded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    hidden = settings.policy_dir / ".grant-everything.csv"
    hidden.write_text("p, *, *, *, *, allow\n")
    (settings.policy_dir / "extra.csv.swp").write_text("p, *, *, *, *, allow\n")
    engine = PolicyEngine(settings.policy_dir)
    loaded = engine.load()
    assert ".grant-everything.csv" not in loaded.source.files
    assert not engine.decide_for("alice", "user", "acme", "trusted", "admin:policy", "read").allowed
