"""Write-ahead audit: a side effect happens only after its attempt record is durable, on
SQLite and PostgreSQL (the real app in-process, real stores; spies count the side effects)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.sdk.he import SecretContext
from tests.conftest import STANDARD_KEYS, STANDARD_TENANTS
from tests.support.audit import stored_records
from tests.support.inprocess import InProcess, in_process, make_settings
from tests.support.outage import Outage

MODEL = "breast-cancer-lr"  # small keys: a context is < 1 MB


class Spy:
    def __init__(self, target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = getattr(target, name)

        def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, spied)


@pytest.fixture(params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, trained_models_dir: Path
) -> Iterator[tuple[InProcess, str]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'audit.db'}"
        extra: dict[str, Any] = {}
    else:
        url = request.getfixturevalue("pg_url")
        extra = {"audit_url": url}
    settings = make_settings(
        tmp_path,
        models_dir=trained_models_dir,
        he={"workers": 1},
        audit={"write_timeout_s": 0.5},
        inference={"models": [MODEL]},
        **extra,
    )
    with in_process(settings, STANDARD_TENANTS, STANDARD_KEYS) as running:
        yield running, url


def _context(app: InProcess) -> bytes:
    plan = app.client.get(f"/v1/he/models/{MODEL}", headers=app.headers("medco-he"))
    assert plan.status_code == 200, plan.text
    return SecretContext.create(plan.text).public_context()


def test_no_side_effect_without_a_committed_attempt(
    app: tuple[InProcess, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, url = app
    pool = running.pipeline.he
    register = Spy(pool, "register_context", monkeypatch)
    delete = Spy(pool, "delete_owned", monkeypatch)
    from secure_aiaas.api.routes import audit as audit_routes

    export = Spy(audit_routes, "export_range", monkeypatch)
    he, auditor = running.headers("medco-he"), running.headers("acme-auditor")
    body = _context(running)
    # Normal operation first: each side effect runs once, after its attempt record.
    created = running.client.post(f"/v1/he/contexts?model={MODEL}", content=body, headers=he)
    assert created.status_code == 201, created.text
    context_id = created.json()["context_id"]
    records = stored_records(url, created.headers["x-request-id"])
    assert [r["decision"] for r in records] == ["attempt", "allow"]
    assert register.calls == 1

    with Outage(url):
        refused = [
            running.client.post(f"/v1/he/contexts?model={MODEL}", content=body, headers=he),
            running.client.delete(f"/v1/he/contexts/{context_id}", headers=he),
            running.client.post("/v1/audit/exports", json={"format": "jsonl"}, headers=auditor),
        ]
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "audit_unavailable"
    # The spies saw no call while the attempt could not be committed.
    assert (register.calls, delete.calls, export.calls) == (1, 0, 0)
    contexts = running.pipeline.he._contexts
    assert contexts.get(context_id) is not None  # the 503'd delete deleted nothing
    assert contexts.usage("medco/")[0] == 1  # the 503'd register stored nothing

    # After the outage the same calls work, each preceded by its attempt.
    deleted = running.client.delete(f"/v1/he/contexts/{context_id}", headers=he)
    assert deleted.status_code == 204
    assert [r["decision"] for r in stored_records(url, deleted.headers["x-request-id"])] == [
        "attempt",
        "allow",
    ]
    exported = running.client.post("/v1/audit/exports", json={}, headers=auditor)
    assert exported.status_code == 200 and export.calls == 1


def test_reads_are_not_started_while_the_writer_is_failing(
    app: tuple[InProcess, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, url = app
    served = running.pipeline.models.get(MODEL)
    infer = Spy(served, "infer", monkeypatch)
    alice = running.headers("alice")
    body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}
    assert (
        running.client.post(f"/v2/models/{MODEL}/infer", json=body, headers=alice).status_code
        == 200
    )
    assert infer.calls == 1
    with Outage(url):
        first = running.client.post(f"/v2/models/{MODEL}/infer", json=body, headers=alice)
        assert first.status_code == 503  # its record could not be written: 503
        assert running.pipeline.audit.failing
        ready = running.client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["audit_store"] is False
        calls = infer.calls
        second = running.client.post(f"/v2/models/{MODEL}/infer", json=body, headers=alice)
        assert second.status_code == 503
        assert infer.calls == calls  # known to be failing: the forward pass never started
    after = running.client.post(f"/v2/models/{MODEL}/infer", json=body, headers=alice)
    assert after.status_code == 200
    assert running.client.get("/v2/health/ready").json()["checks"]["audit_store"] is True
