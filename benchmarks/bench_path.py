"""The secure request path against the fastest bare FastAPI route doing the same work, side
by side in one run on this machine (wrk as the load generator):

* ``GET /v1/whoami``: bare route vs the secure server (default settings, SQLite audit) at
  1/16/64 clients; and 1 vs 2 worker processes of each (ours with Redis for shared quotas).
* ``digits-mlp`` over v2 at 64 clients: bare inline forward (1 torch thread) vs secure.
* ``text-embed`` at 64 clients: bare inline forward vs secure (dynamic batching).
* durable audit appends with 8 concurrent writers through the group-commit writer (SQLite).

    python -m benchmarks.bench_path [--seconds 8] [--only whoami,digits,embed,appends,workers]
                                    [--writer process|thread]

Writes benchmarks/results/bench_path.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.loadgen import WRK, wrk
from tests.conftest import (
    REDIS_URL,
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    free_port,
    private_server,
    provision,
    service_env,
    stop_server,
)


def _bare(
    module: str, env: dict[str, str], workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"{module}:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        cwd=REPO,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url + "/", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{module} did not start")


def _secure(tmp: Path, **extra: str) -> tuple[Any, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    server = private_server(tmp, SAIAAS_HE__ENABLED="false", **extra)
    return server, server.api_keys["alice"]


def _start_workers(
    tmp: Path, workers: int, writer: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    from secure_aiaas.crypto import init_keys

    tmp.mkdir(parents=True, exist_ok=True)
    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    env = service_env(
        tmp,
        tmp / "keys",
        tmp / "policies",
        SAIAAS_LOG__LEVEL="INFO",
        SAIAAS_HE__ENABLED="false",
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp / "no-models"),
        SAIAAS_REDIS_URL=REDIS_URL,
        SAIAAS_SCHEDULING__KEY_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
        SAIAAS_AUDIT__WRITER=writer,
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secure_aiaas.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    for _ in range(900):
        try:
            if httpx.get(url + "/v1/whoami", headers=headers, timeout=1).status_code == 200:
                time.sleep(2.0)  # every worker up
                return proc, url, keys["alice"]
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("multi-worker server did not start")


def _digits_body() -> dict[str, object]:
    x = np.random.default_rng(0).integers(0, 17, size=(1, 64)).astype(np.float32)
    return {
        "inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.reshape(-1).tolist()}
        ]
    }


def _appends(writers: int, per_writer: int, tmp: Path) -> float:
    from secure_aiaas.audit import AuditWriter, SqlAuditStore, utc_now
    from secure_aiaas.crypto import init_keys, load_keys
    from secure_aiaas.types import AuditEvent

    init_keys(tmp / "akeys")
    store = SqlAuditStore(f"sqlite:///{tmp / 'appends.db'}", timeout_s=30)
    store.create_schema()
    writer = AuditWriter(store, load_keys(tmp / "akeys"), timeout_s=30)
    writer.start()

    def event() -> AuditEvent:
        return AuditEvent(
            ts=utc_now(),
            request_id=uuid.uuid4().hex,
            method="GET",
            route="/v1/whoami",
            status=200,
            decision="allow",
            latency_ms=1.0,
            tenant="acme",
            subject="alice",
            key_id="k_1",
            role="user",
            action="read",
            object="identity",
            rule="*, *, identity, read, allow",
            policy_version="v1",
            details={"bytes_in": 0},
        )

    async def run() -> float:
        async def one() -> None:
            for _ in range(per_writer):
                await writer.append(event())

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(writers)))
        return writers * per_writer / (time.perf_counter() - started)

    try:
        return asyncio.run(run())
    finally:
        writer.close()
        store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--only", default="whoami,workers,digits,embed,appends")
    # The servers' environment is built afresh (SAIAAS_* of the caller's is not passed on):
    # where the audit writer runs is chosen here.
    parser.add_argument("--writer", choices=["process", "thread"], default="process")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_path.json"
    )
    args = parser.parse_args()
    assert WRK is not None, "wrk is needed (apt-get install wrk)"
    only = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="saiaas-path-"))
    out: dict[str, Any] = {"seconds": args.seconds, "writer": args.writer}
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[Any] = []

    def load(
        url: str, path: str, key: str | None, clients: int, body: object | None = None
    ) -> dict[str, float]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        figures = wrk(
            url,
            path,
            headers=headers,
            body=body,
            clients=clients,
            seconds=args.seconds,
            workdir=tmp,
        )
        print(path, clients, figures, flush=True)
        return figures

    try:
        if "whoami" in only:
            bare, bare_url = _bare("benchmarks.bare_app", {})
            procs.append(bare)
            secure, key = _secure(
                tmp / "whoami",
                SAIAAS_MODELS_DIR=str(tmp / "no-models"),
                SAIAAS_AUDIT__WRITER=args.writer,
            )
            servers.append(secure)
            rows = []
            for clients in (1, 16, 64):
                rows.append(
                    {
                        "clients": clients,
                        "bare": load(bare_url, "/v1/whoami", None, clients),
                        "secure": load(secure.base_url, "/v1/whoami", key, clients),
                    }
                )
            out["whoami"] = rows
            stop_server(secure)
            servers.remove(secure)
        if "workers" in only:
            # The bare route with as many workers beside ours: how far two processes can
            # scale on this machine at all (wrk shares its cores).
            rows = []
            for workers in (1, 2):
                bare, bare_url = _bare("benchmarks.bare_app", {}, workers)
                try:
                    time.sleep(2.0)  # every worker up
                    bare_figures = load(bare_url, "/v1/whoami", None, 64)
                finally:
                    bare.terminate()
                    bare.wait(60)
                proc, url, key = _start_workers(tmp / f"w{workers}", workers, args.writer)
                try:
                    secure_figures = load(url, "/v1/whoami", key, 64)
                    rows.append({"workers": workers, "bare": bare_figures, **secure_figures})
                finally:
                    proc.terminate()
                    proc.wait(60)
            out["workers"] = rows
        if "digits" in only or "embed" in only:
            from secure_aiaas.training import train

            models = tmp / "models"
            for name in ("digits-mlp", "text-embed"):
                train(name, models, version="1", progress=False)
            secure, key = _secure(
                tmp / "models-server",
                SAIAAS_MODELS_DIR=str(models),
                SAIAAS_AUDIT__WRITER=args.writer,
            )
            servers.append(secure)
            if "digits" in only:
                bare, bare_url = _bare(
                    "benchmarks.bare_model_app",
                    {"SAIAAS_BENCH_MODELS_DIR": str(models), "SAIAAS_BENCH_TORCH_THREADS": "1"},
                )
                body = _digits_body()
                out["digits"] = {
                    "bare": load(bare_url, "/v2/models/digits-mlp/infer", None, 64, body),
                    "secure": load(secure.base_url, "/v2/models/digits-mlp/infer", key, 64, body),
                }
                bare.terminate()
                bare.wait(10)
            if "embed" in only:
                threads = str(len(os.sched_getaffinity(0)))
                bare, bare_url = _bare(
                    "benchmarks.bare_model_app",
                    {"SAIAAS_BENCH_MODELS_DIR": str(models), "SAIAAS_BENCH_TORCH_THREADS": threads},
                )
                body = {
                    "model": "text-embed",
                    "input": "The quarterly report shows revenue growth in the region.",
                }
                out["embed"] = {
                    "bare": load(bare_url, "/v1/embeddings", None, 64, body),
                    "secure": load(secure.base_url, "/v1/embeddings", key, 64, body),
                }
                bare.terminate()
                bare.wait(10)
        if "appends" in only:
            out["appends_8_writers_sqlite"] = round(_appends(8, 500, tmp), 1)
            print("appends", out["appends_8_writers_sqlite"], flush=True)
    finally:
        for server in servers:
            stop_server(server)
        for proc in procs:
            proc.terminate()
        threading.Event().wait(0.5)
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
