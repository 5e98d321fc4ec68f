"""Library-level throughput of the dynamic batcher: 1 / 8 / 64 concurrent submitters.

Each round starts C closed-loop clients (submit, await, repeat) against one batcher and
records requests per second plus per-request latency percentiles in ``extra_info``.
``batching=on``: BatchingConfig defaults (64 rows, no delay: whatever queued during the previous
pass); ``delay``: 64 rows, 2 ms max queue delay; ``off``: one request per pass.
``direct``: the predictor called in a plain loop, no asyncio, no thread: the bare ceiling.

Run: ``python -m pytest benchmarks/bench_batching.py --benchmark-enable``
(``SAIAAS_BENCH_DEVICE=cuda`` to force the device; default auto).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np
import pytest

from secure_aiaas.inference import (
    BatchingConfig,
    DynamicBatcher,
    ModelRegistry,
    configure_torch_threads,
)

REQUESTS = {"digits-mlp": 4096, "text-embed": 256}
TEXTS = [
    "How do I reset my password?",
    "The quarterly report is due on Friday.",
    "A man is playing a guitar on the street.",
    "Please summarise the attached contract in plain language for the board.",
]


@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from secure_aiaas.training import train

    data_dir = tmp_path_factory.mktemp("bench")
    configure_torch_threads(None)
    registry = ModelRegistry(data_dir)
    loaded = {}
    for name in REQUESTS:
        train(name, data_dir, version="1", progress=False)
        predictor = registry.load(name, device=os.environ.get("SAIAAS_BENCH_DEVICE"))
        predictor.warmup(64)
        loaded[name] = predictor
    return loaded


def _item(model: str, i: int) -> Any:
    if model == "text-embed":
        return [TEXTS[i % len(TEXTS)]]
    return np.full((1, 64), i % 17, dtype=np.float32)


async def _drive(
    predictor: Any, model: str, clients: int, total: int, cfg: BatchingConfig
) -> dict[str, Any]:
    batcher = DynamicBatcher(
        predictor, max_batch_size=cfg.max_batch_size, max_delay_s=cfg.max_delay_s,
        max_queue_size=max(cfg.max_queue_size, clients),
    )  # fmt: skip
    latencies: list[float] = []
    per_client = total // clients

    async def client(c: int) -> None:
        for i in range(per_client):
            item = _item(model, c * per_client + i)
            started = time.perf_counter()
            await batcher.submit(item)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - started
    await batcher.close()
    return {"elapsed": elapsed, "latencies": latencies, "stats": batcher.stats()}


def _record(benchmark: Any, result: dict[str, Any], requests: int) -> None:
    lat = np.sort(np.asarray(result["latencies"])) * 1000
    benchmark.extra_info.update(
        requests=requests,
        throughput_rps=round(requests / result["elapsed"], 1),
        p50_ms=round(float(np.percentile(lat, 50)), 3),
        p99_ms=round(float(np.percentile(lat, 99)), 3),
    )
    stats = result.get("stats")
    if stats is not None:
        benchmark.extra_info["mean_batch_rows"] = round(stats.mean_batch_rows, 2)


CONFIGS = {
    "on": BatchingConfig(),
    "delay": BatchingConfig(max_delay_s=0.002),
    "off": BatchingConfig(max_batch_size=1),
}


@pytest.mark.parametrize("batching", ["on", "delay", "off"])
@pytest.mark.parametrize("clients", [1, 8, 64])
@pytest.mark.parametrize("model", ["digits-mlp", "text-embed"])
def test_batcher_throughput(
    benchmark: Any, predictors: dict[str, Any], model: str, clients: int, batching: str
) -> None:
    cfg = CONFIGS[batching]
    total = REQUESTS[model]
    result = benchmark.pedantic(
        lambda: asyncio.run(_drive(predictors[model], model, clients, total, cfg)),
        rounds=3, iterations=1, warmup_rounds=1,
    )  # fmt: skip
    _record(benchmark, result, total)
    assert result["stats"].requests_total == total // clients * clients


@pytest.mark.parametrize("model", ["digits-mlp", "text-embed"])
def test_direct_baseline(benchmark: Any, predictors: dict[str, Any], model: str) -> None:
    predictor, total = predictors[model], REQUESTS[model]

    def run() -> dict[str, Any]:
        latencies = []
        started = time.perf_counter()
        for i in range(total):
            t = time.perf_counter()
            predictor.predict(_item(model, i))
            latencies.append(time.perf_counter() - t)
        return {"elapsed": time.perf_counter() - started, "latencies": latencies}

    _record(benchmark, benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1), total)
