"""Load test: several tenants mixing plaintext, embeddings, scrubbing and encrypted calls, with
and without one tenant flooding; afterwards every request sent has exactly one audit record
and the chain verifies.

Loopback only, bounded in time (a 3 s warm-up and three phases of ``--phase-s`` seconds,
default 15: baseline, flood within quotas, flood with the quotas lifted)::

    .venv/bin/python -m benchmarks.bench_load [--phase-s 15] [--redis redis://127.0.0.1:6379/0]

The generator is asyncio + httpx (closed-loop users with think time; the flood has none),
in this process: on a small machine it competes with the server for the same cores, so the
absolute figures are a floor. Results: stdout (JSON) and benchmarks/results/bench_load.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.conftest import REPO, provision, run_cli, service_env, start_server, stop_server

RESULTS = Path(__file__).resolve().parent / "results"
TENANTS = {
    "acme": "trusted",
    "beta": "trusted",
    "medco": "sensitive",
    "flood": "trusted",
    "flood2": "trusted",
}
KEYS = {
    "alice": ("acme", "alice", "user"),
    "bea": ("beta", "bea", "user"),
    "frank": ("medco", "frank", "he-user"),
    "mallory": ("flood", "mallory", "user"),
    "trudy": ("flood2", "trudy", "user"),
}
TEXTS = [
    "Please call Maria Garcia on +1 415 555 0100 about the invoice.",
    "The meeting moved to Thursday; nothing personal in this one.",
    "Send the report to j.smith@example.com before noon.",
]


@dataclass
class Sample:
    route: str
    tenant: str
    phase: str
    status: int
    seconds: float
    request_id: str | None


@dataclass
class Recorder:
    phase: str = "warmup"
    samples: list[Sample] = field(default_factory=list)
    transport_errors: int = 0

    async def call(
        self, tenant: str, route: str, send: Callable[[], Awaitable[httpx.Response]]
    ) -> int:
        started = time.perf_counter()
        try:
            response = await send()
        except httpx.HTTPError:
            self.transport_errors += 1
            return 0
        self.samples.append(
            Sample(
                route,
                tenant,
                self.phase,
                response.status_code,
                time.perf_counter() - started,
                response.headers.get("x-request-id"),
            )
        )
        return response.status_code


def _digits_body() -> dict[str, Any]:
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    arr = x[:8].astype(np.float32)
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(arr.shape),
                "datatype": "FP32",
                "data": arr.reshape(-1).tolist(),
            }
        ]
    }


def _he_body(base: str, key: str) -> bytes:
    from sklearn.datasets import load_breast_cancer

    from secure_aiaas.sdk import EncryptedClient
    from secure_aiaas.sdk.client import _EncryptedBase

    x, _ = load_breast_cancer(return_X_y=True)
    with EncryptedClient(base, key) as client:
        session = client.session("breast-cancer-lr")
    return _EncryptedBase._requests(session, x[:64], "batched")[0][1]


async def _user(
    rec: Recorder, stop: asyncio.Event, think_s: float, step: Callable[[], Awaitable[int]]
) -> None:
    while not stop.is_set():
        await step()
        if think_s:
            await asyncio.sleep(think_s)


async def _run(base: str, keys: dict[str, str], he_body: bytes, phase_s: float) -> Recorder:
    from secure_aiaas.crypto.he_wire import CONTENT_TYPE

    rec = Recorder()
    digits = _digits_body()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    clients = {
        name: httpx.AsyncClient(
            base_url=base, timeout=60, limits=limits, headers={"Authorization": f"Bearer {key}"}
        )
        for name, key in keys.items()
    }

    def plain(who: str, tenant: str) -> Callable[[], Awaitable[int]]:
        return lambda: rec.call(
            tenant,
            "POST /v2/models/{name}/infer",
            lambda: clients[who].post("/v2/models/digits-mlp/infer", json=digits),
        )

    def embed(who: str, tenant: str) -> Callable[[], Awaitable[int]]:
        return lambda: rec.call(
            tenant,
            "POST /v1/embeddings",
            lambda: clients[who].post(
                "/v1/embeddings", json={"model": "text-embed", "input": TEXTS[:2]}
            ),
        )

    def scrub(who: str, tenant: str) -> Callable[[], Awaitable[int]]:
        return lambda: rec.call(
            tenant,
            "POST /v1/privacy/scrub",
            lambda: clients[who].post("/v1/privacy/scrub", json={"texts": TEXTS}),
        )

    def encrypted(who: str, tenant: str) -> Callable[[], Awaitable[int]]:
        return lambda: rec.call(
            tenant,
            "POST /v1/he/models/{name}/infer",
            lambda: clients[who].post(
                "/v1/he/models/breast-cancer-lr/infer",
                content=he_body,
                headers={"Content-Type": CONTENT_TYPE},
            ),
        )

    normal = [
        (0.05, plain("alice", "acme")),
        (0.05, plain("alice", "acme")),
        (0.1, embed("bea", "beta")),
        (0.1, scrub("bea", "beta")),
        (0.2, encrypted("frank", "medco")),
    ]
    # Two flooding tenants with the same shape: "flood" has quotas, "flood2" has none.
    floods = {
        who: [plain(key, who), scrub(key, who), embed(key, who)]
        for who, key in (("flood", "mallory"), ("flood2", "trudy"))
    }

    async def phase(name: str, seconds: float, flood: str | None) -> None:
        rec.phase = name
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_user(rec, stop, think, step)) for think, step in normal]
        if flood is not None:
            tasks += [
                asyncio.create_task(_user(rec, stop, 0.0, floods[flood][i % 3])) for i in range(16)
            ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)

    try:
        await phase("warmup", 3, None)
        await phase("baseline", phase_s, None)
        await phase("flood", phase_s, "flood")
        # The same flood from a tenant without quotas: what the quotas buy.
        await phase("flood-unlimited", phase_s, "flood2")
    finally:
        for client in clients.values():
            await client.aclose()
    return rec


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def _summary(rec: Recorder, phase_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("baseline", "flood", "flood-unlimited"):
        rows = [s for s in rec.samples if s.phase == phase]
        normal = [s for s in rows if not s.tenant.startswith("flood")]
        routes: dict[str, Any] = {}
        by_route: dict[str, list[Sample]] = defaultdict(list)
        for s in normal:
            by_route[s.route].append(s)
        for route, items in sorted(by_route.items()):
            ok = [s.seconds for s in items if s.status == 200]
            routes[route] = {
                "n": len(items),
                "ok": len(ok),
                "rps": round(len(items) / phase_s, 1),
                "p50_ms": round(_pct(ok, 0.50), 1),
                "p95_ms": round(_pct(ok, 0.95), 1),
                "p99_ms": round(_pct(ok, 0.99), 1),
                "statuses": dict(Counter(s.status for s in items)),
            }
        flood = [s for s in rows if s.tenant.startswith("flood")]
        out[phase] = {
            "requests": len(rows),
            "rps": round(len(rows) / phase_s, 1),
            "normal_statuses": dict(Counter(s.status for s in normal)),
            "routes": routes,
            "flood": {
                "requests": len(flood),
                "statuses": dict(Counter(s.status for s in flood)),
                "ok_p50_ms": round(_pct([s.seconds for s in flood if s.status == 200], 0.5), 1),
                "refused_p50_ms": round(
                    _pct([s.seconds for s in flood if s.status == 429], 0.5), 1
                ),
            },
        }
    return out


def _audit_check(env: dict[str, str], data_dir: Path, before: int, rec: Recorder) -> dict[str, Any]:
    from secure_aiaas.audit import SqlAuditStore

    store = SqlAuditStore(f"sqlite:///{data_dir / 'audit.db'}")
    try:
        records = list(store.iter_records(lo=before + 1))
    finally:
        store.dispose()
    ids = Counter(str(r["request_id"]) for r in records)
    refusals: Counter[str] = Counter()
    for r in records:
        details = r.get("details")
        details = json.loads(details) if isinstance(details, str) else details or {}
        if "quota" in details:
            refusals[f"{r['tenant']}:{details['quota']}"] += 1
    sent = [s.request_id for s in rec.samples]
    verify = run_cli(env, "audit", "verify")
    return {
        "requests_sent": len(sent) + rec.transport_errors,
        "responses": len(sent),
        "transport_errors": rec.transport_errors,
        "audit_records": len(records),
        "quota_refusals_audited": dict(refusals),
        "every_response_has_one_record": all(ids.get(str(i)) == 1 for i in sent),
        "records_equal_requests": len(records) == len(sent) + rec.transport_errors,
        "chain_verifies": verify.returncode == 0,
        "verify_output": verify.stdout.strip().splitlines()[-1:] if verify.stdout else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-s", type=float, default=15.0)
    parser.add_argument(
        "--redis", default=os.environ.get("SAIAAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()
    phase_s = min(args.phase_s, 18.0)  # three phases + warm-up stay under a minute

    from secure_aiaas.crypto import init_keys
    from secure_aiaas.training import BUILTIN_MODELS, train

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    models_dir = args.models_dir
    if models_dir is None:
        models_dir = tmp / "models"
        for name in BUILTIN_MODELS:
            train(name, models_dir, version="1", progress=False)
    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    prefix = "bench-" + uuid.uuid4().hex[:8]
    env = service_env(
        tmp,
        tmp / "keys",
        tmp / "policies",
        SAIAAS_MODELS_DIR=str(models_dir),
        SAIAAS_LOG__LEVEL="WARNING",
        SAIAAS_HE__WORKERS="1",
        SAIAAS_REDIS_URL=args.redis,
        SAIAAS_SCHEDULING__KEY_PREFIX=prefix,
    )
    keys = provision(env, TENANTS, KEYS)
    for tenant in ("acme", "beta", "medco"):
        run_cli(env, "tenant", "set-limits", tenant, "--rpm", "6000", "--priority", "1")
    run_cli(env, "tenant", "set-limits", "flood", "--rpm", "240", "--concurrent", "4")
    server = start_server(env, tmp / "server.log")
    try:
        he_body = _he_body(server.base_url, keys["frank"])
        from secure_aiaas.audit import SqlAuditStore

        store = SqlAuditStore(f"sqlite:///{tmp / 'data' / 'audit.db'}")
        before = store.head()[0]
        store.dispose()
        rec = asyncio.run(_run(server.base_url, keys, he_body, phase_s))
    finally:
        stop_server(server)  # drains the audit writer and signs a final checkpoint
    summary = _summary(rec, phase_s)
    summary["audit"] = _audit_check(env, tmp / "data", before, rec)
    summary.update(phase_s=phase_s, cpus=os.cpu_count(), quotas="redis")
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_load.jsonl").open("a") as fh:
        fh.write(json.dumps(summary, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=2, sort_keys=True))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
