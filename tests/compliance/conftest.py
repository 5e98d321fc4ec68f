"""Fixtures for the compliance tests: stores on real SQLite and PostgreSQL, filled chains,
exports, and a real server with the auditor API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.audit.export import ExportRequest, export_range
from secure_aiaas.crypto import ServerKeys
from secure_aiaas.crypto.keystore import known_audit_public_keys
from secure_aiaas.types import AuditEvent
from tests.conftest import (
    STANDARD_KEYS,
    Server,
    private_server,
    stop_server,
)

TENANTS = ("acme", "medco", "globex")


def make_event(i: int, tenant: str | None = None, *, day: int = 1) -> AuditEvent:
    """A varied but deterministic record: tenants, decisions, models, PII counts, HE use."""
    tenant = tenant if tenant is not None else TENANTS[i % 3]
    deny = i % 7 == 3
    he = i % 5 == 0
    details: dict[str, object] = {"bytes_in": 100 + i}
    if not deny:
        details["model"] = "he-linear" if he else ("sentiment" if i % 2 else "ner")
        if he:
            details["he"] = {"context_id": f"ctx{i % 4}", "ciphertext_sha256": "ab" * 32}
        else:
            details["pii"] = {"PERSON": i % 3, "EMAIL_ADDRESS": i % 2}
    return AuditEvent(
        ts=f"2026-01-{day:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}"
        ".000000+00:00",
        request_id=f"r{i}",
        method="POST",
        route="/v2/he/models/{name}/infer" if he else "/v2/models/{name}/infer",
        status=403 if deny else 200,
        decision="deny" if deny else "allow",
        latency_ms=1.0 + (i % 50),
        tenant=tenant,
        subject=f"user{i % 4}",
        key_id="k1",
        role="user",
        action="infer",
        object=f"{'he-model' if he else 'model'}:m",
        rule="default-deny" if deny else "user, trust:trusted, model:*, infer, allow",
        policy_version="v1",
        details=details,
    )


@pytest.fixture
def public_keys(keys_dir: Path) -> dict[str, object]:
    return known_audit_public_keys(keys_dir)


def fill(
    store: SqlAuditStore,
    keys: ServerKeys,
    n: int = 120,
    *,
    batch: int = 20,
    day: int = 1,
    start: int = 0,
) -> None:
    """Append ``n`` records in batches, with a signed checkpoint after each batch."""
    for first in range(start, start + n, batch):
        store.append_batch(
            [make_event(i, day=day) for i in range(first, min(start + n, first + batch))]
        )
        store.write_checkpoint(
            keys.audit_signing_key, keys.audit_key_id, f"2026-02-01T00:00:{first % 60:02d}+00:00"
        )


def export(
    store: SqlAuditStore,
    keys: ServerKeys,
    out: Path,
    *,
    tenant: str | None = "acme",
    fmt: str = "jsonl",
    since: str | None = None,
    until: str | None = None,
) -> dict[str, object]:
    return export_range(
        store,
        out,
        ExportRequest(since, until, tenant, fmt),
        signing_key=keys.audit_signing_key,
        key_id=keys.audit_key_id,
        created_at="2026-02-02T00:00:00+00:00",
    )


AUDIT_KEYS = {**STANDARD_KEYS, "medco-auditor": ("medco", "mia", "auditor")}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def audit_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    """(server, audit store URL) on SQLite or PostgreSQL, one per module and backend: the
    service takes seconds to start (models), so the API tests share it."""
    import psycopg

    from tests.conftest import PG_ADMIN_URL, require_service

    tmp = tmp_path_factory.mktemp(f"audit-{request.param}")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'data' / 'audit.db'}"
    else:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    backend = {} if schema is None else {"audit_url": url, "database_url": url}
    # The auditor API needs no HE workers.
    srv = private_server(tmp, AUDIT_KEYS, **backend, SAIAAS_HE__ENABLED="false")
    try:
        yield srv, url
    finally:
        stop_server(srv)
        if schema is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
