"""Anonymous floods are bounded: requests without a valid key get individual records only
within the per-address and per-replica budgets; beyond them 429, counted into aggregate
records (count, window, keyed address hash), so the trail stays complete and small."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from secure_aiaas.audit import SqlAuditStore
from tests.conftest import (
    REDIS_URL,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    provision,
    require_service,
    service_env,
    start_server,
    stop_server,
)

PER_ADDRESS = 30
BYTES_PER_S = 4096  # → 4 anonymous records per second per replica
FLOOD_S = 4.0


def _env(tmp_path: Path, keys_dir: Path, policy_dir: Path, **extra: str) -> dict[str, str]:
    settings = {
        "SAIAAS_HE__ENABLED": "false",
        "SAIAAS_MODELS_DIR": str(tmp_path / "no-models"),
        "SAIAAS_PRIVACY__ENABLED": "false",
        "SAIAAS_SCHEDULING__ANONYMOUS_PER_ADDRESS_PER_MINUTE": str(PER_ADDRESS),
        "SAIAAS_SCHEDULING__ANONYMOUS_AUDIT_BYTES_PER_S": str(BYTES_PER_S),
        "SAIAAS_SCHEDULING__ANONYMOUS_FLUSH_S": "1",
    }
    return service_env(tmp_path, keys_dir, policy_dir, **{**settings, **extra})


async def _flood(
    base_urls: list[str], seconds: float, connections: int = 64, at_least: int = 0
) -> list[int]:
    """Requests for ``seconds``, and on until ``at_least`` were answered: a busy machine
    floods slower, not less (at most 120 s)."""
    statuses: list[int] = []
    started = time.monotonic()
    wrong = {"Authorization": "Bearer saiaas_" + "A" * 43}

    def flooding() -> bool:
        elapsed = time.monotonic() - started
        return elapsed < 120 and (elapsed < seconds or len(statuses) < at_least)

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(base_url=base_urls[n % len(base_urls)], timeout=10) as c:
            while flooding():
                path = ("/v1/whoami", "/v1/models", "/no/such/route")[n % 3]
                response = await c.get(path, headers=wrong if n % 2 else {})
                statuses.append(response.status_code)

    await asyncio.gather(*(worker(n) for n in range(connections)))
    return statuses


def _records(data_dir: Path) -> list[dict[str, object]]:
    store = SqlAuditStore(f"sqlite:///{data_dir / 'audit.db'}")
    try:
        return list(store.iter_records())
    finally:
        store.dispose()


def _store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("audit.db*"))


def test_a_64_connection_anonymous_flood_is_bounded_and_counted(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    env = _env(tmp_path, keys_dir, policy_dir)
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    server = start_server(env, tmp_path / "server.log")
    try:
        before = len(_records(server.data_dir))
        bytes_before = _store_bytes(server.data_dir)
        started = time.monotonic()
        statuses = asyncio.run(_flood([server.base_url], FLOOD_S, at_least=600))
        elapsed = time.monotonic() - started
        with server.client() as client:  # a keyed caller is served throughout
            answered = client.get(
                "/v1/whoami", headers={"Authorization": f"Bearer {keys['alice']}"}
            )
        assert answered.status_code == 200
    finally:
        stop_server(server)  # flushes the last tally
    records = _records(server.data_dir)[before:]
    individual = [r for r in records if r["action"] != "anonymous.refused" and r["tenant"] is None]
    aggregates = [
        json.loads(str(r["details"]))["refusals"]
        for r in records
        if r["action"] == "anonymous.refused"
    ]
    refused = statuses.count(429)
    assert len(statuses) > 500 and refused > 0.9 * len(statuses)
    # Individual records: at most the per-address budget (one address here).
    assert len(individual) <= PER_ADDRESS
    # Every refusal is counted in an aggregate record; none names the address itself.
    assert sum(int(a["refused"]) for a in aggregates) == refused
    assert all("127.0.0.1" not in json.dumps(a) for a in aggregates)
    assert len(aggregates) <= elapsed / 1.0 + 3
    growth = _store_bytes(server.data_dir) - bytes_before
    assert growth <= (BYTES_PER_S * elapsed) + 64 * 1024, growth  # + one WAL page set


def test_budgets_are_shared_by_replicas_through_redis(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"anon-{time.monotonic_ns()}"
    env = _env(
        tmp_path,
        keys_dir,
        policy_dir,
        SAIAAS_REDIS_URL=REDIS_URL,
        SAIAAS_SCHEDULING__KEY_PREFIX=prefix,
    )
    provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    servers: list[Server] = []
    try:
        servers = [start_server(env, tmp_path / f"server-{n}.log") for n in range(2)]
        before = len(_records(servers[0].data_dir))
        statuses = asyncio.run(
            _flood([s.base_url for s in servers], 2.0, connections=16, at_least=200)
        )
    finally:
        for server in servers:
            stop_server(server)
    records = _records(tmp_path / "data")[before:]
    individual = [r for r in records if r["action"] != "anonymous.refused" and r["tenant"] is None]
    assert len(individual) <= PER_ADDRESS  # one budget for both replicas
    assert statuses.count(429) > 0


@pytest.mark.parametrize("path", ["/v1/whoami", "/v2/models/x"])
def test_refusals_over_budget_are_429_with_retry_after(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, path: str
) -> None:
    env = _env(
        tmp_path, keys_dir, policy_dir, SAIAAS_SCHEDULING__ANONYMOUS_PER_ADDRESS_PER_MINUTE="2"
    )
    server = start_server(env, tmp_path / "server.log")
    try:
        with server.client() as client:
            answers = [client.get(path) for _ in range(4)]
    finally:
        stop_server(server)
    assert [a.status_code for a in answers] == [401, 401, 429, 429]
    assert answers[-1].headers["retry-after"] and answers[-1].json()["code"] == "rate_limited"
