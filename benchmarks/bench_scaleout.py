"""The local engine against Ray Serve on this machine: uvicorn (1 worker) vs the Ray ingress
with 1 and 2 replicas, side by side in one run.

Same requests for all three (authenticated ``GET /v1/whoami``: API key lookup, policy,
tenant quota in Redis, an audit record in PostgreSQL, no model), same shared stores (PostgreSQL,
Redis, the published policy), a closed loop of 1, 8 and 32 clients (a Python client on the same 2 cores: beyond ~32 it measures itself). Memory is the PSS
(proportional set size: shared pages split, not counted once per process) of the server's
whole process tree after the load: for Ray that includes the GCS, raylet, Serve's
controller and proxy, and the replicas.

    SAIAAS_BENCH_SECONDS=4 make bench BENCH=benchmarks/bench_scaleout.py

Figures: printed, and appended to benchmarks/results/bench_scaleout.jsonl.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    REDIS_URL,
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    free_port,
    provision,
    require_service,
    run_cli,
    service_env,
)

pytest.importorskip("ray", reason="ray[serve] not installed (pip install -e '.[ray]')")

DURATION_S = float(os.environ.get("SAIAAS_BENCH_SECONDS", "4"))
CLIENTS = (1, 8, 32)
ENGINES = {
    "local (uvicorn, 1 worker)": {"SAIAAS_ENGINE": "local"},
    "ray ingress x1": {
        "SAIAAS_ENGINE": "ray",
        "SAIAAS_SCALEOUT__INGRESS_MIN_REPLICAS": "1",
        "SAIAAS_SCALEOUT__INGRESS_MAX_REPLICAS": "1",
    },
    "ray ingress x2": {"SAIAAS_ENGINE": "ray"},
}


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant (Ray's raylet forks the workers: all under the CLI)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def _pss_mib(pid: int) -> float:
    total_kib = 0
    for member in _tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kib += next(int(ln.split()[1]) for ln in rollup.splitlines() if ln.startswith("Pss:"))
    return total_kib / 1024


async def _drive(
    url: str, headers: dict[str, str], clients: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    served_by: set[str] = set()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                response = await client.get("/v1/whoami")
                assert response.status_code == 200, response.text[:200]
                latencies.append(time.perf_counter() - t0)
                served_by.add(response.headers.get("x-served-by", "-"))

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "replicas_seen": len(served_by),
    }


def _until_served(url: str, headers: dict[str, str], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + "/v1/whoami", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not serve within 120 s")


def test_local_engine_against_ray_ingress(
    tmp_path: Path,
    keys_dir: Path,
    policy_dir: Path,
    pg_url: str,
    record_figures: Callable[..., None],
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    base = service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        audit_url=pg_url,
        database_url=pg_url,
        SAIAAS_REDIS_URL=REDIS_URL,
        SAIAAS_SCHEDULING__KEY_PREFIX="bench-" + uuid.uuid4().hex[:12],
        SAIAAS_POLICY__SOURCE="published",
        SAIAAS_HE__ENABLED="false",
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_LLM__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_LOG__LEVEL="WARNING",
        SAIAAS_SCALEOUT__NUM_CPUS=str(os.cpu_count() or 2),
    )
    api_keys = provision(base, STANDARD_TENANTS, STANDARD_KEYS)
    assert run_cli(base, "policy", "publish").returncode == 0
    headers = {"Authorization": f"Bearer {api_keys['alice']}"}
    rows = []
    for label, extra in ENGINES.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with (tmp_path / f"{label.split()[0]}-{port}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "secure_aiaas.cli", "serve", "--port", str(port)],
                env={**base, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        try:
            started = time.monotonic()
            _until_served(url, headers, process)
            start_s = time.monotonic() - started
            asyncio.run(_drive(url, headers, 16, 2.0))  # warm-up
            for clients in CLIENTS:
                figures = asyncio.run(_drive(url, headers, clients, DURATION_S))
                rows.append({"engine": label, "clients": clients, **figures})
            memory = _pss_mib(process.pid)
            for row in rows:
                if row["engine"] == label:
                    row.update(pss_mib=round(memory), start_s=round(start_s, 1))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    baseline = {r["clients"]: r["requests_per_s"] for r in rows if r["engine"].startswith("local")}
    print(
        f"\n{'engine':28} {'clients':>7} {'req/s':>8} {'x local':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'PSS MiB':>8} {'start s':>8}"
    )
    for row in rows:
        ratio = row["requests_per_s"] / baseline[row["clients"]]
        row["ratio_to_local"] = round(ratio, 2)
        record_figures(**row, seconds=DURATION_S)
        print(
            f"{row['engine']:28} {row['clients']:>7} {row['requests_per_s']:>8} "
            f"{ratio:>8.2f} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['pss_mib']:>8} "
            f"{row['start_s']:>8}"
        )
    assert all(r["replicas_seen"] == 2 for r in rows if r["engine"].endswith("x2"))
