"""Encrypted inference on a local Ray cluster: ingress ×2 and an HE deployment ×2
multiplexed by tenant. 4 tenants × 20 encrypted requests, 8 at a time: every result
decrypts to the plaintext answer, all four replicas serve, and each tenant's keys load on
few HE replicas (≤ 8 loads for 4 contexts), not on every replica."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from secure_aiaas.crypto import init_keys
from tests.conftest import (
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    provision,
    require_service,
    run_cli,
)
from tests.scaleout.conftest import replica_settings, serving_on_ray, shared_state_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

HE_TENANTS = [f"he{i}" for i in range(1, 5)]
KEYS = {
    **STANDARD_KEYS,
    **{tenant: (tenant, f"{tenant}-user", "he-user") for tenant in HE_TENANTS},
}
REQUESTS_PER_TENANT = 20
CONCURRENT_PER_TENANT = 2  # 8 in all; the per-tenant HE limit (2) is not exceeded


@pytest.fixture
def cluster(
    tmp_path: Path, pg_url: str, trained_models_dir: Path, ray_serve: str
) -> Iterator[tuple[str, dict[str, str]]]:
    require_service("Redis", "127.0.0.1", 6379)
    init_keys(tmp_path / "keys")
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    env, prefix = shared_state_env(tmp_path, pg_url)
    tenants = {**STANDARD_TENANTS, **dict.fromkeys(HE_TENANTS, "sensitive")}
    api_keys = provision(env, tenants, KEYS)
    assert run_cli(env, "policy", "publish").returncode == 0
    settings = replica_settings(
        tmp_path,
        pg_url,
        prefix,
        trained_models_dir,
        privacy={"enabled": False},
        llm={"enabled": False},
        # Four replicas of half a CPU on the two cores; one HE worker process each.
        scaleout={
            "ingress_min_replicas": 2,
            "ingress_max_replicas": 2,
            "replica_num_cpus": 0.5,
            "he_replicas": 2,
            "he_replica_num_cpus": 0.5,
        },
        log={"level": "WARNING"},
    )
    with serving_on_ray(ray_serve, settings) as url:
        yield url, api_keys


def _plaintext(url: str, api_key: str, x: np.ndarray) -> np.ndarray:
    response = httpx.post(
        url + "/v2/models/digits-mlp/infer",
        headers={"Authorization": f"Bearer {api_key}"},
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(len(x), -1)


async def _tenant_load(url: str, api_key: str, x: np.ndarray) -> list[np.ndarray]:
    from secure_aiaas.sdk import AsyncEncryptedClient

    async with AsyncEncryptedClient(url, api_key, timeout=120) as client:
        results = [await client.predict("digits-mlp", x)]  # uploads the tenant's keys once

        async def caller(count: int) -> list[np.ndarray]:
            return [await client.predict("digits-mlp", x) for _ in range(count)]

        rest = REQUESTS_PER_TENANT - 1
        shares = [
            rest // CONCURRENT_PER_TENANT + (i < rest % CONCURRENT_PER_TENANT)
            for i in range(CONCURRENT_PER_TENANT)
        ]
        for chunk in await asyncio.gather(*(caller(n) for n in shares)):
            results += chunk
    return results


async def _all_tenants(url: str, api_keys: dict[str, str], x: np.ndarray) -> list[list[np.ndarray]]:
    return list(await asyncio.gather(*(_tenant_load(url, api_keys[t], x) for t in HE_TENANTS)))


def _ingress_he_stats(url: str, api_key: str) -> dict[str, dict[str, Any]]:
    """Each ingress replica's HE figures (the resource view, by ``X-Served-By``)."""
    seen: dict[str, dict[str, Any]] = {}
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as client:
        for _ in range(200):
            response = client.get("/v1/admin/resources")
            assert response.status_code == 200, response.text
            seen[response.headers["x-served-by"]] = response.json()["he"]
            if len(seen) == 2:
                break
    return seen


def test_encrypted_requests_of_four_tenants_on_ingress_x2_and_he_x2(
    cluster: tuple[str, dict[str, str]],
) -> None:
    url, api_keys = cluster
    x = np.random.default_rng(0).integers(0, 17, size=(2, 64)).astype(np.float32)
    expected = _plaintext(url, api_keys["alice"], x)
    per_tenant = asyncio.run(_all_tenants(url, api_keys, x))
    assert [len(results) for results in per_tenant] == [REQUESTS_PER_TENANT] * 4
    for results in per_tenant:
        for logits in results:
            np.testing.assert_allclose(logits, expected, atol=0.05)
    stats = _ingress_he_stats(url, api_keys["secadmin"])
    assert len(stats) == 2, stats  # both ingress replicas
    assert all(sum(s["evaluated_by"].values()) > 0 for s in stats.values()), stats
    he_replicas = {r for s in stats.values() for r in s["evaluated_by"]}
    assert len(he_replicas) == 2, stats  # both HE replicas
    loads = {
        replica: max(s["contexts_loaded"].get(replica, 0) for s in stats.values())
        for replica in he_replicas
    }
    assert sum(loads.values()) <= 8, loads
    print(
        f"\nHE on Ray: {4 * REQUESTS_PER_TENANT} encrypted requests decrypted correctly; "
        f"ingress replicas evaluated "
        + ", ".join(f"{i}: {s['evaluated_by']}" for i, s in stats.items())
        + f"; contexts loaded per HE replica {loads}"
    )
