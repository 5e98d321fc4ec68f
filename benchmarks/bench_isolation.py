"""Scrubbing cannot stall the service: `GET /v1/whoami` p99 of one tenant while another sends
maximum-size scrub requests, against the same route idle — side by side in one run.

    python -m benchmarks.bench_isolation [--seconds 8] [--scrubbers 2]

Prints one JSON object (and writes it to benchmarks/results/isolation.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.loadgen import WRK, wrk
from secure_aiaas.crypto import init_keys
from tests.conftest import (
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    provision,
    service_env,
    start_server,
    stop_server,
)

PARAGRAPH = (
    "Dear Maria López, your appointment at 14 Rue de Rivoli, 75001 Paris is confirmed; "
    "call +44 20 7946 0958 or write to maria.lopez@example.com about invoice 4411. "
)


def max_size_body(max_texts: int, max_chars: int, max_request: int) -> dict[str, object]:
    per_text = min(max_chars, max_request // max_texts)
    text = (PARAGRAPH * (per_text // len(PARAGRAPH) + 1))[:per_text]
    count = min(max_texts, max_request // per_text)
    return {"texts": [text] * count}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--scrubbers", type=int, default=2, help="concurrent scrub clients")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "isolation.json"
    )
    args = parser.parse_args()
    assert WRK is not None, "wrk is needed (apt-get install wrk)"
    tmp = Path(tempfile.mkdtemp(prefix="saiaas-isolation-"))
    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    env = service_env(
        tmp,
        tmp / "keys",
        tmp / "policies",
        SAIAAS_LOG__LEVEL="WARNING",
        SAIAAS_HE__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp / "no-models"),
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    server = start_server(env, tmp / "server.log")
    from secure_aiaas.config import LimitsSettings

    limits = LimitsSettings()
    body = max_size_body(limits.max_texts, limits.max_text_chars, limits.max_request_chars)
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    results: dict[str, object] = {
        "scrub_chars_per_request": sum(map(len, body["texts"])),  # type: ignore[arg-type]
        "scrubbers": args.scrubbers,
    }
    try:
        results["idle"] = wrk(
            server.base_url,
            "/v1/whoami",
            headers=headers,
            body=None,
            clients=1,
            seconds=args.seconds,
            workdir=tmp,
        )
        stop = threading.Event()
        done: list[float] = []
        statuses: set[int] = set()

        def scrub_loop() -> None:
            scrub_headers = {"Authorization": f"Bearer {keys['acme-admin']}"}
            with httpx.Client(
                base_url=server.base_url, headers=scrub_headers, timeout=120
            ) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    response = client.post("/v1/privacy/scrub", json=body)
                    statuses.add(response.status_code)
                    done.append(time.perf_counter() - started)

        threads = [threading.Thread(target=scrub_loop) for _ in range(args.scrubbers)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # the scrubbers are busy
        results["under_scrub_load"] = wrk(
            server.base_url,
            "/v1/whoami",
            headers=headers,
            body=None,
            clients=1,
            seconds=args.seconds,
            workdir=tmp,
        )
        stop.set()
        for t in threads:
            t.join()
        results["scrub_requests"] = len(done)
        results["scrub_seconds_median"] = round(sorted(done)[len(done) // 2], 3) if done else None
        results["scrub_statuses"] = sorted(statuses)
        idle_p99 = results["idle"]["p99_ms"]  # type: ignore[index]
        loaded_p99 = results["under_scrub_load"]["p99_ms"]  # type: ignore[index]
        results["p99_ratio"] = round(loaded_p99 / idle_p99, 2)
    finally:
        stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
