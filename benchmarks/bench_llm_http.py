"""Chat over HTTP, side by side with bare `generate` in one run: the whole secure path.

The service side is a real `secure-aiaas serve` with the built-in model (authentication,
policy, token quotas, the conversation scrubbed, the streamed attempt and outcome records
committed), streamed over server-sent events by an async HTTP client at 1, 4 and 8
concurrent streams; the baseline is bare transformers `generate` in this process, one prompt
at a time (the same `Side.bare` as `bench_llm.py`). Same eight prompts, greedy, 64 new tokens
at most (over HTTP the model may stop at its end-of-sequence token: tokens/s counts the
completion tokens the usage reports). The server runs with repetition penalty 1.0, as bare.

Run: ``python -m benchmarks.bench_llm_http``. Environment: ``SAIAAS_BENCH_ROUNDS`` (3),
``SAIAAS_BENCH_STREAMS`` ("1,4,8"), ``SAIAAS_BENCH_DTYPE`` (bfloat16), ``OUT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_llm import NEW_TOKENS, QUESTIONS, Side, measure, median_figures, report
from tests.conftest import REPO, provision, service_env, start_server, stop_server

MODEL = "smollm2-135m-instruct"


def _http_start(client: httpx.AsyncClient) -> Any:
    def start(index: int) -> AsyncIterator[int]:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}],
            "max_tokens": NEW_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

        async def chunks() -> AsyncIterator[int]:
            seen = 0
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    usage = event.get("usage")
                    if usage:  # the last chunk: the tokens not yet counted
                        rest = int(usage["completion_tokens"]) - seen
                        if rest > 0:
                            yield rest
                        continue
                    if any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                        seen += 1
                        yield 1

        return chunks()

    return start


async def _service(base_url: str, api_key: str, streams: list[int], rounds: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=300, limits=limits
    ) as client:
        start = _http_start(client)
        await measure("warmup", start, 1, requests=1)
        per: dict[str, list[Any]] = {}
        for _ in range(rounds):
            for n in streams:
                label = f"service x{n}"
                per.setdefault(label, []).append(
                    await measure(label, start, n, requests=max(n, len(QUESTIONS)))
                )
        return {k: median_figures(v) for k, v in per.items()}


def main() -> list[dict[str, Any]]:
    from secure_aiaas.crypto import init_keys
    from secure_aiaas.inference import configure_torch_threads
    from secure_aiaas.llm import ensure_builtin_chat_model

    configure_torch_threads(None)
    rounds = int(os.environ.get("SAIAAS_BENCH_ROUNDS", "3"))
    streams = [int(s) for s in os.environ.get("SAIAAS_BENCH_STREAMS", "1,4,8").split(",")]
    dtype = os.environ.get("SAIAAS_BENCH_DTYPE", "bfloat16")
    tmp = Path(tempfile.mkdtemp(prefix="bench-llm-http-"))
    server = None
    try:
        init_keys(tmp / "keys")
        shutil.copytree(REPO / "policies", tmp / "policies")
        ensure_builtin_chat_model(tmp / "models")
        env = service_env(
            tmp,
            tmp / "keys",
            tmp / "policies",
            SAIAAS_MODELS_DIR=str(tmp / "models"),
            SAIAAS_HE__ENABLED="false",
            SAIAAS_LOG__LEVEL="WARNING",
            SAIAAS_LLM__DTYPE=dtype,
            SAIAAS_LLM__REPETITION_PENALTY="1.0",
        )
        # A trusted tenant without quotas: the benchmark measures the path, not a limit.
        keys = provision(env, {"bench": "trusted"}, {"b": ("bench", "bench-user", "user")})
        server = start_server(env, tmp / "server.log")
        side = Side(tmp / "models", None, dtype)
        side.bare(1)  # warm
        bare = median_figures([side.bare(len(QUESTIONS)) for _ in range(rounds)])
        del side
        results = {"bare": bare}
        results.update(asyncio.run(_service(server.base_url, keys["b"], streams, rounds)))
        rows = report(dtype, "cpu", {"results": results, "identical_greedy_tokens": "n/a"})
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_llm_http.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
