"""The auditor API over real HTTP: filters, cursors, tenant isolation, signed exports."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx

from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.audit.offline import load_public_keys, verify_export
from secure_aiaas.audit.query import EventFilter, query_events
from secure_aiaas.crypto import ServerKeys
from tests.compliance.conftest import fill
from tests.conftest import Server


def traffic(server: Server) -> None:
    with server.client("alice") as alice, server.client("medco-user") as medco:
        for _ in range(3):
            assert alice.get("/v1/whoami").status_code == 200
        assert alice.get("/v1/admin/policy").status_code == 403
        assert medco.get("/v1/whoami").status_code == 200
        assert medco.get("/v1/admin/policy").status_code == 403
    assert httpx.get(server.base_url + "/v1/whoami").status_code == 401


def all_pages(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/audit/events", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        records += body["records"]
        cursor = body["next_cursor"]
        if cursor is None:
            return records


def test_auditor_sees_only_its_tenant_and_cross_tenant_is_refused_and_audited(
    audit_server: tuple[Server, str],
) -> None:
    server, _ = audit_server
    traffic(server)
    with server.client("acme-auditor") as auditor, server.client("secadmin") as admin:
        mine = all_pages(auditor, limit=2)
        assert mine and {r["tenant"] for r in mine} == {"acme"}
        seqs = [r["seq"] for r in mine]
        assert seqs == sorted(set(seqs))  # cursor pages: no gaps, no repeats
        # One big page agrees (it also holds the auditor's own paging requests since).
        later = [r["seq"] for r in all_pages(auditor, limit=1000)]
        assert later[: len(seqs)] == seqs and len(later) > len(seqs)
        denied = all_pages(auditor, decision="deny")
        assert {r["rule"] for r in denied} == {"default-deny"}
        assert "alice" in {r["subject"] for r in denied}
        assert {r["subject"] for r in all_pages(auditor, subject="alice")} == {"alice"}
        # Tenant A's auditor asking for tenant B: nothing, and the attempt is on record.
        for response in (
            auditor.get("/v1/audit/events", params={"tenant": "medco"}),
            auditor.post("/v1/audit/exports", json={"tenant": "medco"}),
        ):
            assert response.status_code == 403
            assert "records" not in response.json() and b"medco" not in response.content
            attempt = [
                r
                for r in all_pages(admin, tenant="acme")
                if r["request_id"] == response.headers["x-request-id"]
            ]
            assert len(attempt) == 1
            assert (attempt[0]["decision"], attempt[0]["object"], attempt[0]["subject"]) == (
                "deny",
                "audit:tenant:medco",
                "dave",
            )
        # Another tenant's auditor sees its own tenant only.
        with server.client("medco-auditor") as medco_auditor:
            assert {r["tenant"] for r in all_pages(medco_auditor)} == {"medco"}
        # A security-admin sees every tenant (and unauthenticated requests) or one tenant.
        everything = all_pages(admin)
        assert {"acme", "medco", None} <= {r["tenant"] for r in everything}
        assert {r["tenant"] for r in all_pages(admin, tenant="medco")} == {"medco"}
    with server.client("alice") as alice:  # a plain user is no auditor
        assert alice.get("/v1/audit/events").status_code == 403
    assert httpx.get(server.base_url + "/v1/audit/events").status_code == 401
    invalid = server.client("acme-auditor").get("/v1/audit/events", params={"cursor": "@@"})
    assert invalid.status_code == 422


def test_export_download_verifies_offline_and_is_audited(
    audit_server: tuple[Server, str], tmp_path: Path
) -> None:
    """(The server is shared by this module's tests: assertions hold whatever ran before.)"""
    server, _ = audit_server
    traffic(server)
    with server.client("alice") as alice:
        published = alice.get("/v1/audit/public-key")
    assert published.status_code == 200
    key_file = tmp_path / "audit.pem"
    key_file.write_text(published.json()["pem_bundle"])
    with server.client("acme-auditor") as auditor, server.client("secadmin") as admin:
        response = auditor.post("/v1/audit/exports", json={"format": "jsonl"})
        assert response.status_code == 200, response.text
        manifest_sha = response.headers["x-manifest-sha256"]
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
            tar.extractall(tmp_path / "dl", filter="data")
        export_dir = tmp_path / "dl" / "audit-export"
        report = verify_export(export_dir, load_public_keys([key_file]))
        assert report.ok, report.findings
        lines = (export_dir / "records.jsonl").read_text().splitlines()
        assert {json.loads(line)["record"]["tenant"] for line in lines} == {"acme"}
        # The export itself is on record: an attempt before it was built (write-ahead), then
        # the outcome with the manifest it produced.
        attempt, record = [
            r
            for r in all_pages(admin, tenant="acme")
            if r["request_id"] == response.headers["x-request-id"]
        ]
        assert attempt["decision"] == "attempt" and attempt["seq"] < record["seq"]
        assert record["details"]["export"]["manifest_sha256"] == manifest_sha
        assert record["route"] == "/v1/audit/exports" and record["decision"] == "allow"
        # security-admin: the global chain in CSV.
        glob = admin.post("/v1/audit/exports", json={"format": "csv"})
        assert glob.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(glob.content), mode="r:gz") as tar:
            tar.extractall(tmp_path / "g", filter="data")
    cli = server.cli(
        "audit",
        "verify-export",
        str(tmp_path / "g" / "audit-export"),
        "--public-key",
        str(key_file),
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "global chain" in cli.stdout


def test_filters_model_status_time_range(store: SqlAuditStore, keys: ServerKeys) -> None:
    fill(store, keys, 120)
    page, cursor = query_events(store, EventFilter(tenant="acme", model="sentiment"), limit=5)
    assert len(page) == 5 and cursor is not None
    assert {(r["tenant"], r["model"]) for r in page} == {("acme", "sentiment")}
    rest, _ = query_events(
        store, EventFilter(tenant="acme", model="sentiment"), cursor=cursor, limit=1000
    )
    assert min(r["seq"] for r in rest) > max(r["seq"] for r in page)
    denied, _ = query_events(store, EventFilter(status=403), limit=1000)
    assert denied and {r["decision"] for r in denied} == {"deny"}
    window, _ = query_events(
        store, EventFilter(since="2026-01-01T00:00:30", until="2026-01-01T00:01:00"), limit=1000
    )
    assert [r["request_id"] for r in window] == [f"r{i}" for i in range(30, 60)]
    assert all(isinstance(r["details"], dict) for r in window)


def test_every_audit_route_is_gated(audit_server: tuple[Server, str]) -> None:
    from fastapi.routing import APIRoute

    from secure_aiaas.api.routes import audit

    server, _ = audit_server
    for route in audit.router.routes:
        assert isinstance(route, APIRoute)
        gates = [
            d.call for d in route.dependant.dependencies if hasattr(d.call, "__authorization__")
        ]
        assert gates, f"{route.path} has no authorization dependency"
        for method in route.methods:
            assert httpx.request(method, server.base_url + route.path).status_code == 401
