"""Quota arithmetic on both backends: in-memory, and the real Redis shared by two "replicas"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from secure_aiaas.scheduling import (
    WINDOW_S,
    MemoryQuotas,
    QuotaExceededError,
    QuotaUnavailableError,
    RedisQuotas,
)
from secure_aiaas.types import Principal, TenantLimits
from tests.conftest import free_port

Factory = Callable[[], "MemoryQuotas | RedisQuotas"]


def principal(key: str = "k1", tenant: str = "acme", **limits: int) -> Principal:
    return Principal(tenant, "trusted", key, "user", key, TenantLimits(**limits))


@pytest.fixture(params=["memory", "redis"])
def quotas(request: pytest.FixtureRequest) -> Factory:
    """A factory of quota instances sharing state (Redis: one prefix, like replicas)."""
    if request.param == "memory":
        shared = MemoryQuotas()
        return lambda: shared
    prefix = request.getfixturevalue("redis_prefix")
    url = request.getfixturevalue("redis_url")
    return lambda: RedisQuotas(url, prefix=prefix)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def outcomes(q: MemoryQuotas | RedisQuotas, who: Principal, n: int) -> list[str]:
    result = []
    for _ in range(n):
        try:
            await q.admit(who)
            result.append("ok")
        except QuotaExceededError as exc:
            assert 1 <= exc.retry_after <= 2 * WINDOW_S
            result.append(exc.limit)
    return result


def test_tenant_rpm_is_shared_by_keys_and_refusals_cost_nothing(quotas: Factory) -> None:
    async def scenario() -> None:
        a, b = quotas(), quotas()
        first = principal("k1", requests_per_minute=4)
        second = principal("k2", requests_per_minute=4)
        assert await outcomes(a, first, 3) == ["ok"] * 3
        assert await outcomes(b, second, 3) == ["ok", "tenant_rpm", "tenant_rpm"]
        # Another tenant is untouched.
        assert (
            await outcomes(a, principal("k3", tenant="beta", requests_per_minute=4), 4)
            == ["ok"] * 4
        )

    run(scenario())


def test_key_rpm_limits_each_key_alone(quotas: Factory) -> None:
    async def scenario() -> None:
        a, b = quotas(), quotas()
        assert await outcomes(a, principal("k1", key_requests_per_minute=2), 3) == [
            "ok",
            "ok",
            "key_rpm",
        ]
        assert await outcomes(b, principal("k2", key_requests_per_minute=2), 2) == ["ok", "ok"]
        # The tenant limit counts every key; the key limit refuses first when lower.
        both = principal("k4", requests_per_minute=100, key_requests_per_minute=1)
        assert await outcomes(b, both, 2) == ["ok", "key_rpm"]

    run(scenario())


def test_concurrency_slots_are_released_and_shared(quotas: Factory) -> None:
    async def scenario() -> None:
        a, b = quotas(), quotas()
        who = principal(max_concurrent=2)
        first, second = await a.admit(who), await b.admit(who)
        with pytest.raises(QuotaExceededError) as refused:
            await a.admit(who)
        assert refused.value.limit == "tenant_concurrency"
        await first.release()
        await first.release()  # idempotent: frees one slot, not two
        third = await b.admit(who)
        with pytest.raises(QuotaExceededError):
            await a.admit(who)
        await second.release()
        await third.release()
        assert await outcomes(a, who, 2) == ["ok", "ok"]  # never released: leases expire

    run(scenario())


def test_unlimited_tenant_never_counts(quotas: Factory) -> None:
    assert run(outcomes(quotas(), principal(), 50)) == ["ok"] * 50


def test_memory_window_slides() -> None:
    now = [1_000_000 * WINDOW_S + 0.75 * WINDOW_S]
    q = MemoryQuotas(clock=lambda: now[0])
    who = principal(requests_per_minute=10)
    assert run(outcomes(q, who, 11)) == ["ok"] * 10 + ["tenant_rpm"]
    now[0] += WINDOW_S * 0.5  # a quarter into the next minute: the old one still weighs 7.5
    assert run(outcomes(q, who, 3)) == ["ok", "ok", "tenant_rpm"]
    now[0] += WINDOW_S * 2  # two minutes on: all forgotten
    assert run(outcomes(q, who, 10)) == ["ok"] * 10


def test_memory_lease_expires_without_release() -> None:
    now = [0.0]
    q = MemoryQuotas(lease_ttl_s=30, clock=lambda: now[0])
    who = principal(max_concurrent=1)
    run(q.admit(who))  # a request whose replica died: never released
    assert run(outcomes(q, who, 1)) == ["tenant_concurrency"]
    now[0] += 31
    assert run(outcomes(q, who, 1)) == ["ok"]


def test_redis_lease_expires_without_release(redis_url: str, redis_prefix: str) -> None:
    import time

    q = RedisQuotas(redis_url, prefix=redis_prefix, lease_ttl_s=1)
    who = principal(max_concurrent=1)

    async def scenario() -> list[str]:
        await q.admit(who)
        first = await outcomes(q, who, 1)
        await asyncio.sleep(1.2)  # past the lease's TTL (Redis' own clock)
        return first + await outcomes(q, who, 1)

    started = time.monotonic()
    assert run(scenario()) == ["tenant_concurrency", "ok"]
    assert time.monotonic() - started >= 1.0


def test_unreachable_redis_refuses_limited_tenants_only() -> None:
    q = RedisQuotas(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    with pytest.raises(QuotaUnavailableError):
        run(q.admit(principal(requests_per_minute=1000)))
    # A tenant without limits needs no round trip, so it is served.
    run(q.admit(principal()))


def test_pipeline_without_quota_backend_refuses_limited_tenants() -> None:
    from secure_aiaas.pipeline import Pipeline
    from secure_aiaas.scheduling import (
        AnonymousBudget,
        AnonymousLimiter,
        RefusalTally,
        current_priority,
    )

    pipeline = Pipeline(
        registry=None,
        policy=None,
        audit=None,  # type: ignore[arg-type]
        quotas=None,  # no quota store: limited tenants must be refused, not let through
        anonymous=AnonymousLimiter(AnonymousBudget()),
        refusals=RefusalTally(b"k" * 32),
        object_key=b"o" * 32,
    )
    with pytest.raises(QuotaUnavailableError):
        run(pipeline.admit(principal(max_concurrent=1)))

    async def admitted() -> int:
        await pipeline.admit(
            Principal("acme", "trusted", "s", "user", "k", TenantLimits(priority=3))
        )
        return current_priority()  # the request's priority, for the compute queues

    assert run(admitted()) == 3
