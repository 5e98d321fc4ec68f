"""Plaintext and chat models in deployments of their own, on a local Ray cluster: ingress ×2,
a `model-digits-mlp` deployment (`@serve.batch`) and a `chat-tiny-chat` deployment (events
streamed back to the ingress).

Against the local engine (a real `secure-aiaas serve` on the same models, and the chat
model's own `LLMService` in this process): the same v2 outputs and the same 4xx body for a
bad input; concurrent requests from both ingress replicas share forward passes in the model
replica; a greedy chat completion, streamed and not, is the local engine's text; a client
that hangs up mid-stream stops the remote generation.

One cluster for the module (a cluster and five replicas take ~30 s to start).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from secure_aiaas.config import Settings
from secure_aiaas.crypto import init_keys
from tests.conftest import (
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    fresh_pg_schema,
    provision,
    require_service,
    run_cli,
)
from tests.scaleout.conftest import replica_settings, serving_on_ray, shared_state_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

CHAT = "tiny-chat"
CHAT_CONTEXT = 2048  # the engine's default cap
KEYS = {**STANDARD_KEYS, "pat": ("platform", "pat", "user")}  # platform: no quotas
MESSAGES = [{"role": "user", "content": "Say something about the weather."}]
CONCURRENT = 16


@dataclass
class Cluster:
    base_url: str
    settings: Settings
    api_keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_keys[who]}"}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A schema of this module's own (the cluster lives as long as the module)."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    pg_url: str,
    trained_models_dir: Path,
    ray_serve: str,
) -> Iterator[Cluster]:
    from secure_aiaas.inference import ModelRegistry
    from secure_aiaas.llm.registry import register_causal_lm
    from tests.llm.tiny import save_tiny

    require_service("Redis", "127.0.0.1", 6379)
    tmp = tmp_path_factory.mktemp("ray-models")
    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    models = tmp / "models"
    shutil.copytree(trained_models_dir, models)
    # A long context, so that a hung-up generation has far more left to run than the
    # hang-up takes to reach the replica (200 tokens finished first on a loaded CI box).
    tiny = save_tiny(tmp / "tiny-src", max_position_embeddings=CHAT_CONTEXT)
    register_causal_lm(ModelRegistry(models), tiny, name=CHAT)
    env, prefix = shared_state_env(tmp, pg_url)
    api_keys = provision(env, STANDARD_TENANTS, KEYS)
    assert run_cli(env, "policy", "publish").returncode == 0
    settings = replica_settings(
        tmp,
        pg_url,
        prefix,
        models,
        inference={"models": ["digits-mlp"]},
        # The chat routes scrub (fail closed without a scrubber): one lean worker each.
        privacy={"processes": 1, "pii_model": None},
        he={"enabled": False},
        llm={"dtype": "float32", "default_max_tokens": 24},
        # Ingress ×2 of half a CPU, the model and chat replicas beside them on two cores;
        # the batch wait is long enough for both ingress replicas' calls to meet.
        scaleout={
            "ingress_min_replicas": 2,
            "ingress_max_replicas": 2,
            "replica_num_cpus": 0.5,
            "model_replicas": 1,
            "model_replica_num_cpus": 0.25,
            "model_batch_wait_s": 0.05,
            "chat_replicas": 1,
            "chat_replica_num_cpus": 0.5,
        },
        log={"level": "WARNING"},
    )
    with serving_on_ray(ray_serve, settings) as url:
        yield Cluster(url, settings, api_keys)


def _infer_body(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


def _logits(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


async def _concurrent_infer(cluster: Cluster, batches: list[np.ndarray]) -> list[np.ndarray]:
    async with httpx.AsyncClient(
        base_url=cluster.base_url, headers=cluster.headers("alice"), timeout=60
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/v2/models/digits-mlp/infer", json=_infer_body(x)) for x in batches)
        )
    return [_logits(r) for r in responses]


def _plaintext_views(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Each ingress replica's view of the digits model (the resource view, by replica)."""
    seen: dict[str, dict[str, Any]] = {}
    with httpx.Client(
        base_url=cluster.base_url, headers=cluster.headers("secadmin"), timeout=30
    ) as client:
        for _ in range(200):
            response = client.get("/v1/admin/resources")
            assert response.status_code == 200, response.text
            (model,) = response.json()["plaintext"]["models"]
            seen[response.headers["x-served-by"]] = model
            if len(seen) == 2:
                break
    return seen


def test_v2_inference_matches_the_local_engine_and_is_batched_in_the_model_replica(
    cluster: Cluster, model_server: Server
) -> None:
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 17, size=(2, 64)).astype(np.float32) for _ in range(CONCURRENT)]
    started = time.perf_counter()
    remote = asyncio.run(_concurrent_infer(cluster, batches))
    elapsed = time.perf_counter() - started
    with model_server.client("alice") as local:
        for x, logits in zip(batches, remote, strict=True):
            expected = _logits(local.post("/v2/models/digits-mlp/infer", json=_infer_body(x)))
            # float32 logits of magnitude ~30 from passes of other sizes (the local one
            # batched differently): the kernels' summation order differs by batch size and
            # CPU, 1.1e-5 apart once on an AMD machine.
            np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    views = _plaintext_views(cluster)
    assert len(views) == 2, views  # both ingress replicas answered
    assert {r for v in views.values() for r in v["served_by"]}, views  # a model replica did
    shared = {int(k) for v in views.values() for k in v["batch_requests"]}
    assert max(shared) > 1, views  # some forward pass served several requests
    print(
        f"\nmodel deployment: {CONCURRENT} concurrent requests in {elapsed:.2f} s; "
        "requests per batch seen by each ingress replica: "
        + "; ".join(f"{i}: {v['batch_requests']}" for i, v in views.items())
    )


def test_a_bad_input_gets_the_local_engines_answer(cluster: Cluster, model_server: Server) -> None:
    wrong = _infer_body(np.zeros((2, 63), dtype=np.float32))  # 63 features, the model takes 64
    with httpx.Client(base_url=cluster.base_url, headers=cluster.headers("alice")) as ray_client:
        remote = ray_client.post("/v2/models/digits-mlp/infer", json=wrong)
    with model_server.client("alice") as local_client:
        local = local_client.post("/v2/models/digits-mlp/infer", json=wrong)
    assert 400 <= local.status_code < 500, local.text
    assert remote.status_code == local.status_code, remote.text

    def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "request_id"}

    assert without_request_id(remote.json()) == without_request_id(local.json())


def _local_chat_text(cluster: Cluster, max_tokens: int) -> str:
    """The chat model's answer from its own engine in this process (greedy)."""
    from secure_aiaas.api.app import chat_engine_config
    from secure_aiaas.inference import ModelRegistry
    from secure_aiaas.llm import ChatCompletionRequest, LLMService

    settings = cluster.settings
    service = LLMService.load(
        ModelRegistry(settings.resolved_models_dir()),
        CHAT,
        dtype="float32",
        config=chat_engine_config(settings),
    )
    request = ChatCompletionRequest.model_validate(
        {"model": CHAT, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0}
    )
    prompt = service.prepare_chat(request, [m["content"] for m in MESSAGES])

    async def generate() -> str:
        service.start()
        try:
            body = await service.submit(prompt).body()
        finally:
            await service.close()
        return str(body["choices"][0]["message"]["content"])

    return asyncio.run(generate())


def _chat_body(max_tokens: int, *, stream: bool) -> dict[str, Any]:
    return {
        "model": CHAT,
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 7,
        "stream": stream,
    }


def test_chat_streamed_and_not_is_the_local_engines_greedy_answer(cluster: Cluster) -> None:
    expected = _local_chat_text(cluster, 16)
    with httpx.Client(
        base_url=cluster.base_url, headers=cluster.headers("pat"), timeout=60
    ) as client:
        response = client.post("/v1/chat/completions", json=_chat_body(16, stream=False))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "chat.completion" and body["model"] == CHAT
        (choice,) = body["choices"]
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] in ("stop", "length")
        assert body["usage"]["completion_tokens"] > 0
        assert choice["message"]["content"] == expected

        events: list[str] = []
        with client.stream(
            "POST", "/v1/chat/completions", json=_chat_body(16, stream=True)
        ) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == expected


def test_a_client_that_hangs_up_stops_the_remote_generation(cluster: Cluster) -> None:
    from ray import serve

    from secure_aiaas.scaleout import APP_NAME

    replica = serve.get_deployment_handle(f"chat-{CHAT}", app_name=APP_NAME)
    before = replica.stats.remote().result(timeout_s=30)
    max_tokens = CHAT_CONTEXT - 128  # room for the prompt
    with httpx.Client(
        base_url=cluster.base_url, headers=cluster.headers("pat"), timeout=60
    ) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=_chat_body(max_tokens, stream=True)
        ) as streamed:
            events = (line for line in streamed.iter_lines() if line.startswith("data: "))
            next(events)  # the assistant's role
            next(events)  # the first text, then hang up
    deadline = time.monotonic() + 20
    stats = replica.stats.remote().result(timeout_s=30)
    while time.monotonic() < deadline and stats.active:
        time.sleep(0.2)
        stats = replica.stats.remote().result(timeout_s=30)
    assert stats.active == 0 and stats.waiting == 0, stats
    generated = stats.tokens_total - before.tokens_total
    assert 0 < generated < max_tokens, generated
    print(f"\nchat deployment: a hung-up stream stopped after {generated} of {max_tokens} tokens")


def test_a_pass_that_fails_in_the_model_replica_is_the_local_batchers_error(
    cluster: Cluster,
) -> None:
    """A refusal raised in the replica reaches the ingress's caller as itself (the route
    answers with its status), not as Ray's wrapper (a 500)."""
    from ray import serve

    from secure_aiaas.errors import InferenceError
    from secure_aiaas.scaleout import APP_NAME
    from secure_aiaas.scaleout.model_deployment import RemoteBatcher

    model = serve.get_deployment_handle("model-digits-mlp", app_name=APP_NAME)
    batcher = RemoteBatcher(model, "digits-mlp:1", max_batch_size=64)
    wrong = np.zeros((1, 63), dtype=np.float32)  # past the ingress's checks: the pass fails
    with pytest.raises(InferenceError):
        asyncio.run(batcher.submit(wrong))
    assert batcher.stats().failed_total == 1
