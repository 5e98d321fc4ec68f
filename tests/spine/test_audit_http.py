"""Every request leaves exactly one audit record, durably, before its response; else 503."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    provision,
    service_env,
    start_server,
    stop_server,
)
from tests.support.audit import audit_url, stored_records
from tests.support.outage import Outage
from tests.support.tamper import tamper_url

CANARY_EMAIL = "canary.person@example.org"


def test_one_record_per_request_with_decision_and_rule(shared_server: Server) -> None:
    url = audit_url(shared_server)
    before = len(stored_records(url))
    responses = []
    with shared_server.client("alice") as alice, shared_server.client("medco-user") as medco:
        responses.append(alice.get("/v1/whoami"))  # allow
        responses.append(alice.get("/v1/admin/policy"))  # deny (default)
        responses.append(httpx.get(shared_server.base_url + "/v1/whoami"))  # unauthenticated
        responses.append(alice.get(f"/v1/nothing/{CANARY_EMAIL}"))  # unmatched route
        responses.append(alice.get("/v1/whoami?token=abc"))  # refused early
        responses.append(alice.post("/v1/whoami", content=b"x" * (9 * 1024 * 1024)))  # 413
        responses.append(medco.get("/v1/whoami"))  # allow, other tenant
    assert [r.status_code for r in responses] == [200, 403, 401, 404, 400, 413, 200]
    rows = stored_records(url)[before:]
    assert len(rows) == len(responses)
    by_id = {r["request_id"]: r for r in rows}
    for response in responses:
        assert response.headers["x-request-id"] in by_id
    allow = by_id[responses[0].headers["x-request-id"]]
    assert (allow["decision"], allow["tenant"], allow["subject"], allow["status"]) == (
        "allow",
        "acme",
        "alice",
        200,
    )
    assert allow["rule"] == "*, *, identity, read, allow" and allow["policy_version"]
    assert allow["action"] == "read" and allow["object"] == "identity"
    assert allow["route"] == "/v1/whoami" and allow["latency_ms"] > 0
    deny = by_id[responses[1].headers["x-request-id"]]
    assert (deny["decision"], deny["rule"], deny["status"]) == ("deny", "default-deny", 403)
    unauth = by_id[responses[2].headers["x-request-id"]]
    assert (unauth["decision"], unauth["tenant"]) == ("unauthenticated", None)
    unmatched = by_id[responses[3].headers["x-request-id"]]
    assert unmatched["route"] == "unmatched"  # never the raw path
    blob = json.dumps(rows)
    assert CANARY_EMAIL not in blob
    for key in shared_server.api_keys.values():
        assert key not in blob and key not in shared_server.logs()
    assert CANARY_EMAIL not in shared_server.logs()


def test_health_probes_are_not_audited(shared_server: Server) -> None:
    url = audit_url(shared_server)
    before = len(stored_records(url))
    for _ in range(3):
        assert httpx.get(shared_server.base_url + "/v2/health/live").status_code == 200
    assert len(stored_records(url)) == before


def test_audit_verify_cli_after_traffic_and_tampering(server: Server) -> None:
    with server.client("alice") as alice:
        for _ in range(5):
            alice.get("/v1/whoami")
    stop_server(server)  # shutdown signs a final checkpoint
    ok = server.cli("audit", "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["checkpoints"] >= 1
    with sqlite3.connect(server.data_dir / "audit.db") as conn, pytest.raises(sqlite3.Error):
        conn.execute("UPDATE audit_events SET status=201 WHERE seq=3")  # append-only
    tamper_url(
        audit_url(server),
        "UPDATE audit_events SET status=201 WHERE seq=3",
    )
    bad = server.cli("audit", "verify")
    assert bad.returncode == 1
    assert "TAMPERED (edited) at record 3" in bad.stderr


def test_request_logs_are_json_with_request_id(shared_server: Server) -> None:
    with shared_server.client("alice") as alice:
        response = alice.get("/v1/whoami")
    time.sleep(0.2)
    lines = [json.loads(line) for line in shared_server.logs().splitlines() if line.startswith("{")]
    completed = [ln for ln in lines if ln.get("event") == "request.completed"]
    assert completed, "no request log line"
    assert all(ln.get("request_id") for ln in completed)
    assert response.headers["x-request-id"] in {ln["request_id"] for ln in completed}


@pytest.fixture(params=["sqlite", "postgres"])
def outage_server(
    request: pytest.FixtureRequest, tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> Iterator[tuple[Server, str]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'audit.db'}"
        env = service_env(tmp_path, keys_dir, policy_dir, SAIAAS_AUDIT__WRITE_TIMEOUT_S="0.5")
    else:
        url = request.getfixturevalue("pg_url")
        env = service_env(
            tmp_path,
            keys_dir,
            policy_dir,
            audit_url=url,
            database_url=url,
            SAIAAS_AUDIT__WRITE_TIMEOUT_S="0.5",
        )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    srv = start_server(env, tmp_path / "server.log")
    srv.api_keys = keys
    try:
        yield srv, url
    finally:
        stop_server(srv)


def test_fail_closed_when_audit_store_is_unwritable(outage_server: tuple[Server, str]) -> None:
    server, url = outage_server
    seen: list[httpx.Response] = []
    with server.client("alice") as alice:
        seen.append(alice.get("/v1/whoami"))
        assert seen[-1].status_code == 200
        with Outage(url):
            during = [alice.get("/v1/whoami") for _ in range(3)]
            during.append(httpx.get(server.base_url + "/v1/whoami"))  # 401 path too
            for response in during:
                assert response.status_code == 503, response.text
                assert response.json()["code"] == "audit_unavailable"
            seen.extend(during)
        # Recovery: the server serves and records again, no restart.
        after = [alice.get("/v1/whoami") for _ in range(3)]
        assert [r.status_code for r in after] == [200, 200, 200]
        seen.extend(after)
    recorded = {r["request_id"] for r in stored_records(url)}
    for response in seen:
        if response.status_code < 300:
            assert response.headers["x-request-id"] in recorded
    assert server.process.poll() is None
