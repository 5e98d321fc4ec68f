"""The spine's cost: per-request overhead against a bare FastAPI route, and durable audit
appends/s with 8 concurrent writers on SQLite and PostgreSQL (group commit vs one commit per
record), side by side in one run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.loadgen import WRK, wrk
from secure_aiaas.audit import AuditWriter, SqlAuditStore
from secure_aiaas.crypto import load_keys
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
from tests.spine.test_audit_store import make_event


@pytest.fixture(scope="module")
def spine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from secure_aiaas.crypto import init_keys

    tmp = tmp_path_factory.mktemp("spine")
    init_keys(tmp / "keys")
    import shutil

    shutil.copytree(REPO / "policies", tmp / "policies")
    env = service_env(tmp, tmp / "keys", tmp / "policies", SAIAAS_LOG__LEVEL="WARNING")
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    server = start_server(env, tmp / "server.log")
    yield server.base_url, keys["alice"]
    stop_server(server)


@pytest.fixture(scope="module")
def bare_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/v1/whoami", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.benchmark(group="spine-overhead")
def test_bare_fastapi_route(benchmark, bare_server: str, record_figures) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=bare_server) as client:
        result = benchmark(client.get, "/v1/whoami")
    assert result.status_code == 200
    record_figures(
        kind="bare",
        median_ms=benchmark.stats["median"] * 1000,
        mean_ms=benchmark.stats["mean"] * 1000,
    )


@pytest.mark.benchmark(group="spine-overhead")
def test_secure_spine_route(benchmark, spine_server: tuple[str, str], record_figures) -> None:  # type: ignore[no-untyped-def]
    url, key = spine_server
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        result = benchmark(client.get, "/v1/whoami")
    assert result.status_code == 200
    record_figures(
        kind="spine",
        median_ms=benchmark.stats["median"] * 1000,
        mean_ms=benchmark.stats["mean"] * 1000,
    )


def _concurrent_throughput(
    url: str, headers: dict[str, str], clients: int, per_client: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(base_url=url, headers=headers) as client:
            mine = []
            for _ in range(per_client):
                t0 = time.perf_counter()
                assert client.get("/v1/whoami").status_code == 200
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - started), latencies


@pytest.mark.benchmark(group="spine-concurrent")
@pytest.mark.parametrize("which", ["bare", "spine"])
def test_concurrent_16_clients(
    benchmark,
    which: str,
    bare_server: str,  # type: ignore[no-untyped-def]
    spine_server: tuple[str, str],
    record_figures,
    tmp_path: Path,
) -> None:
    url, headers = (
        (bare_server, {})
        if which == "bare"
        else (spine_server[0], {"Authorization": f"Bearer {spine_server[1]}"})
    )
    if WRK:
        figures = benchmark.pedantic(
            lambda: wrk(
                url,
                "/v1/whoami",
                headers=headers,
                body=None,
                clients=16,
                seconds=4,
                workdir=tmp_path,
            ),
            rounds=1,
            iterations=1,
        )
        record_figures(kind=which, clients=16, **figures)
        return
    rps, lat = benchmark.pedantic(
        _concurrent_throughput, args=(url, headers, 16, 50), rounds=3, iterations=1
    )
    lat.sort()
    record_figures(
        kind=which,
        clients=16,
        requests_per_s=round(rps, 1),
        p50_ms=round(statistics.median(lat) * 1000, 2),
        p99_ms=round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def _eight_writers(append: object, per_writer: int) -> float:
    def run(worker: int) -> None:
        for i in range(per_writer):
            append(make_event(worker * 100000 + i))  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 8 * per_writer / (time.perf_counter() - started)


@pytest.mark.benchmark(group="audit-appends")
@pytest.mark.parametrize("mode", ["commit-per-record", "group-commit"])
def test_durable_appends_8_writers(
    benchmark,
    audit_url: str,
    mode: str,
    keys_dir: Path,  # type: ignore[no-untyped-def]
    record_figures,
) -> None:
    import asyncio

    store = SqlAuditStore(audit_url, timeout_s=30)
    store.create_schema()
    if mode == "commit-per-record":

        def append(event):  # type: ignore[no-untyped-def]
            store.append_batch([event])

        rate = benchmark.pedantic(_eight_writers, args=(append, 50), rounds=3, iterations=1)
    else:
        writer = AuditWriter(store, load_keys(keys_dir), timeout_s=30)
        writer.start()
        loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
        loop_thread.start()

        def append(event):  # type: ignore[no-untyped-def]
            asyncio.run_coroutine_threadsafe(writer.append(event), loop).result()

        rate = benchmark.pedantic(_eight_writers, args=(append, 50), rounds=3, iterations=1)
        writer.close()
        loop.call_soon_threadsafe(loop.stop)
    backend = "sqlite" if audit_url.startswith("sqlite") else "postgresql"
    record_figures(backend=backend, mode=mode, appends_per_s=round(rate, 1), records=store.count())
    store.dispose()
