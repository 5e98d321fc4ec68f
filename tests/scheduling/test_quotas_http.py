"""Quotas over real HTTP: 429 + Retry-After, audited; shared through Redis by two replicas;
fail closed when Redis is configured but unreachable; health probes never limited."""

from __future__ import annotations

import asyncio

import httpx

from secure_aiaas.scheduling import RedisQuotas
from tests.conftest import free_port
from tests.scheduling.conftest import ServerFactory, audit_records, set_limits


def test_rpm_refusal_is_429_with_retry_after_and_audited(make_server: ServerFactory) -> None:
    server = make_server()
    set_limits(server, "acme", "--rpm", "3")
    with server.client("alice") as alice, server.client("bob") as bob:
        statuses = [alice.get("/v1/whoami").status_code for _ in range(2)]
        statuses.append(bob.get("/v1/whoami").status_code)
        refused = alice.get("/v1/whoami")
        statuses.append(refused.status_code)
    assert statuses == [200, 200, 200, 429]
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert refused.json()["code"] == "rate_limited"
    # Another tenant is not affected; health probes never count.
    with server.client("beta-user") as beta:
        assert beta.get("/v1/whoami").status_code == 200
    assert all(httpx.get(server.base_url + "/v2/health/live").status_code == 200 for _ in range(5))
    record = next(
        r for r in audit_records(server) if r["request_id"] == refused.headers["x-request-id"]
    )
    assert record["status"] == 429 and record["tenant"] == "acme"
    assert record["details"]["quota"] == "tenant_rpm"


def test_key_rpm_limits_one_key(make_server: ServerFactory) -> None:
    server = make_server()
    set_limits(server, "acme", "--key-rpm", "2")
    with server.client("alice") as alice, server.client("bob") as bob:
        assert [alice.get("/v1/whoami").status_code for _ in range(3)] == [200, 200, 429]
        assert bob.get("/v1/whoami").status_code == 200


def test_limits_are_shared_by_replicas_through_redis(
    make_server: ServerFactory, redis_url: str, redis_prefix: str
) -> None:
    env = {"SAIAAS_REDIS_URL": redis_url, "SAIAAS_SCHEDULING__KEY_PREFIX": redis_prefix}
    one, two = make_server(**env), make_server(**env)
    set_limits(one, "acme", "--rpm", "4")
    statuses = []
    for server in (one, two, one, two, one, two):
        with server.client("alice") as client:
            statuses.append(client.get("/v1/whoami").status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert any(client.scan_iter(f"{redis_prefix}:q:{{acme}}:rpm:*"))
    finally:
        client.close()


def test_concurrency_is_shared_through_redis(
    make_server: ServerFactory, redis_url: str, redis_prefix: str
) -> None:
    server = make_server(SAIAAS_REDIS_URL=redis_url, SAIAAS_SCHEDULING__KEY_PREFIX=redis_prefix)
    set_limits(server, "acme", "--concurrent", "1")
    with server.client("alice") as alice:
        # Served requests give their slot back: many in a row all pass.
        assert [alice.get("/v1/whoami").status_code for _ in range(5)] == [200] * 5
        whoami = alice.get("/v1/whoami").json()
        # Another replica (this test process) holds acme's only slot.
        from secure_aiaas.types import Principal, TenantLimits

        other = RedisQuotas(redis_url, prefix=redis_prefix)
        held = Principal("acme", "trusted", "x", "user", "x", TenantLimits(max_concurrent=1))

        async def take() -> object:
            return await other.admit(held)

        loop = asyncio.new_event_loop()
        try:
            admission = loop.run_until_complete(take())
            refused = alice.get("/v1/whoami")
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "1"
            loop.run_until_complete(admission.release())  # type: ignore[attr-defined]
            loop.run_until_complete(other.close())
        finally:
            loop.close()
        assert alice.get("/v1/whoami").status_code == 200
    assert whoami["tenant"] == "acme"
    record = next(
        r for r in audit_records(server) if r["request_id"] == refused.headers["x-request-id"]
    )
    assert record["details"]["quota"] == "tenant_concurrency"


def test_unreachable_redis_fails_closed(make_server: ServerFactory) -> None:
    server = make_server(
        SAIAAS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        SAIAAS_SCHEDULING__REDIS_TIMEOUT_S="0.2",
    )
    set_limits(server, "acme", "--rpm", "1000")
    with server.client("alice") as alice, server.client("beta-user") as beta:
        refused = alice.get("/v1/whoami")
        assert refused.status_code == 503
        assert refused.json()["code"] == "quota_unavailable"
        assert "Retry-After" in refused.headers
        # A tenant without limits needs no quota store.
        assert beta.get("/v1/whoami").status_code == 200
    with server.client("secadmin") as admin:
        view = admin.get("/v1/admin/resources").json()
    assert view["quotas"] == {"backend": "redis", "reachable": False}
    record = next(
        r for r in audit_records(server) if r["request_id"] == refused.headers["x-request-id"]
    )
    assert record["status"] == 503 and record["decision"] == "error"
