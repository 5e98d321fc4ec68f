"""Plaintext serving: the full secure path against a bare FastAPI + torch endpoint.

Side by side in one run, for digits-mlp and text-embed at 1, 8 and 64 concurrent clients:
bare endpoint, secure path with dynamic batching, secure path without (max batch 1).
Throughput and p50/p99 latency go to benchmarks/results/bench_serving.jsonl.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.loadgen import WRK, wrk
from tests.conftest import (
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    free_port,
    provision,
    service_env,
    start_server,
    stop_server,
)

DURATION_S = float(os.environ.get("SAIAAS_BENCH_SECONDS", "4"))
CLIENTS = (1, 8, 64)
TEXT = "The quarterly report shows revenue growth in the northern region."


def _digits_body() -> dict[str, object]:
    x = np.random.default_rng(0).integers(0, 17, size=(1, 64)).astype(np.float32)
    return {
        "inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.reshape(-1).tolist()}
        ]
    }


WORKLOADS = {
    "digits-mlp": ("/v2/models/digits-mlp/infer", _digits_body()),
    "text-embed": ("/v1/embeddings", {"model": "text-embed", "input": TEXT}),
}


async def _drive(
    url: str, headers: dict[str, str], path: str, body: dict[str, object], clients: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop = time.monotonic() + DURATION_S
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                response = await client.post(path, json=body)
                assert response.status_code == 200, response.text[:200]
                latencies.append(time.perf_counter() - t0)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - started
    return len(latencies) / elapsed, latencies


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from secure_aiaas.training import train

    path = tmp_path_factory.mktemp("bench-models")
    for name in ("digits-mlp", "text-embed"):
        train(name, path, version="1", progress=False)
    return path


def _secure(tmp: Path, models_dir: Path, batch: int) -> tuple[object, str]:
    from secure_aiaas.crypto import init_keys

    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    env = service_env(
        tmp,
        tmp / "keys",
        tmp / "policies",
        SAIAAS_MODELS_DIR=str(models_dir),
        SAIAAS_LOG__LEVEL="WARNING",
        SAIAAS_HE__ENABLED="false",
        SAIAAS_INFERENCE__MAX_BATCH_SIZE=str(batch),
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    return start_server(env, tmp / "server.log"), keys["alice"]


@pytest.fixture(scope="module")
def targets(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[dict[str, tuple[str, dict[str, str]]]]:
    port = free_port()
    env = {**os.environ, "SAIAAS_BENCH_MODELS_DIR": str(models_dir)}
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.bare_model_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=env,
    )
    bare_url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(bare_url + "/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    batched, key = _secure(tmp_path_factory.mktemp("batched"), models_dir, 64)
    unbatched, key2 = _secure(tmp_path_factory.mktemp("unbatched"), models_dir, 1)
    yield {
        "bare": (bare_url, {}),
        "secure-batching": (batched.base_url, {"Authorization": f"Bearer {key}"}),  # type: ignore[attr-defined]
        "secure-no-batching": (
            unbatched.base_url,  # type: ignore[attr-defined]
            {"Authorization": f"Bearer {key2}"},
        ),
    }
    stop_server(batched)  # type: ignore[arg-type]
    stop_server(unbatched)  # type: ignore[arg-type]
    bare.terminate()
    bare.wait(10)


@pytest.mark.parametrize("clients", CLIENTS)
@pytest.mark.parametrize("model", list(WORKLOADS))
@pytest.mark.parametrize("target", ["bare", "secure-batching", "secure-no-batching"])
def test_serving_throughput(
    benchmark,
    targets,
    record_figures,
    model: str,
    clients: int,  # type: ignore[no-untyped-def]
    target: str,
    tmp_path: Path,
) -> None:
    url, headers = targets[target]
    path, body = WORKLOADS[model]
    if WRK:
        figures = benchmark.pedantic(
            lambda: wrk(
                url,
                path,
                headers=headers,
                body=body,
                clients=clients,
                seconds=max(1, round(DURATION_S)),
                workdir=tmp_path,
            ),
            rounds=1,
            iterations=1,
        )
        record_figures(target=target, model=model, clients=clients, **figures)
        return
    rps, lat = benchmark.pedantic(
        lambda: asyncio.run(_drive(url, headers, path, body, clients)), rounds=1, iterations=1
    )
    lat.sort()
    record_figures(
        target=target,
        model=model,
        clients=clients,
        requests_per_s=round(rps, 1),
        p50_ms=round(statistics.median(lat) * 1000, 2),
        p99_ms=round(lat[max(0, int(len(lat) * 0.99) - 1)] * 1000, 2),
        requests=len(lat),
        client="httpx",
    )
