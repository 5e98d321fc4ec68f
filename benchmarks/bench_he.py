"""HE inference side by side: tutorial-style TenSEAL vs this engine vs plaintext torch.

Per model and packing: server time (the median is the p50; a worker's whole job per request:
check + load the ciphertext, evaluate, serialise), client time, key and ciphertext sizes and
accuracy against plaintext over the full test set (`benchmark.extra_info`, also appended to
``benchmarks/results/bench_he.jsonl``). Contexts and encoded weights are cached, as in the
workers. The tutorial rows follow the reference anchors (`ckks_vector.mm`/`.dot` with every
Galois key; shared/reference/he-baselines.md).

Run: ``python -m pytest benchmarks/bench_he.py --benchmark-enable -p no:cacheprovider``
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tenseal as ts
import torch

from secure_aiaas.crypto.he_wire import InferenceRequest, decode_public_context, encode_request
from secure_aiaas.he import CompiledModel, HEPool, compile_model
from secure_aiaas.he.evaluator import EncodedModel, load_public_context, run_request
from secure_aiaas.inference import export_stages
from secure_aiaas.sdk.he import SecretContext
from tests.he.conftest import Trained, plaintext, train_breast_cancer, train_digits


def _ms(fn: Callable[[], Any], repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _accuracy(encrypted: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    if ref.shape[1] > 1:
        agree = float((encrypted.argmax(1) == ref.argmax(1)).mean())
    else:
        agree = float(((encrypted[:, 0] > 0) == (ref[:, 0] > 0)).mean())
    return {
        "agreement": agree,
        "max_abs_logit_error": float(np.abs(encrypted - ref).max()),
        "samples": len(ref),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, Trained]:
    return {"digits-mlp": train_digits(), "breast-cancer-lr": train_breast_cancer()}


class Ours:
    """The engine as a worker runs it, plus the client, for one model."""

    def __init__(self, trained: Trained, name: str) -> None:
        self.compiled: CompiledModel = compile_model(
            export_stages(trained.model), name, calibration=trained.x_train
        )
        self.client = SecretContext.create(self.compiled.plan.to_json())
        self.public = self.client.public_context()
        self.keys = load_public_context(
            decode_public_context(self.public, max_bytes=64 << 20), self.compiled.plan
        )
        self.model = EncodedModel.build(self.compiled)

    def serve(self, packing: str, n: int, blobs: list[bytes]) -> list[bytes]:
        return run_request(self.model, self.keys, packing, n, tuple(blobs), 4 << 20)


@pytest.fixture(scope="module")
def ours(models: dict[str, Trained]) -> dict[str, Ours]:
    return {name: Ours(trained, name) for name, trained in models.items()}


# --------------------------------------------------------------------------- ours
@pytest.mark.parametrize("name", ["digits-mlp", "breast-cancer-lr"])
def test_ours_single(
    benchmark: Any,
    record_figures: Any,
    models: dict[str, Trained],
    ours: dict[str, Ours],
    name: str,
) -> None:
    engine, trained = ours[name], models[name]
    x1 = trained.x_test[:1]
    blobs = engine.client.encrypt_single(x1)
    out = benchmark(engine.serve, "single", 1, blobs)
    x = trained.x_test  # accuracy over the full test set, one ciphertext per sample
    enc = engine.client.decrypt_single(
        engine.serve("single", len(x), engine.client.encrypt_single(x))
    )
    info = {
        "engine": "ours",
        "packing": "single",
        "model": name,
        "params": engine.compiled.plan.params,
        "public_context_MB": len(engine.public) / 1e6,
        "galois_keys": len(engine.compiled.plan.galois_steps),
        "ct_in_KB": len(blobs[0]) / 1e3,
        "ct_out_KB": len(out[0]) / 1e3,
        "client_encrypt_ms": _ms(lambda: engine.client.encrypt_single(x1)),
        "client_decrypt_ms": _ms(lambda: engine.client.decrypt_single(out)),
        "keygen_ms": _ms(
            lambda: SecretContext.create(engine.compiled.plan.to_json()).public_context(), 3
        ),
        **_accuracy(enc, plaintext(trained.model, x).reshape(len(x), -1)),
    }
    benchmark.extra_info.update(info)
    record_figures(server_ms_p50=1e3 * benchmark.stats.stats.median, **info)


@pytest.mark.parametrize("name", ["digits-mlp", "breast-cancer-lr"])
def test_ours_batched(
    benchmark: Any,
    record_figures: Any,
    models: dict[str, Trained],
    ours: dict[str, Ours],
    name: str,
) -> None:
    engine, trained = ours[name], models[name]
    per = engine.compiled.plan.batched.samples_per_ciphertext
    x = np.resize(trained.x_test, (per, trained.x_test.shape[1]))  # one full batch
    batch = engine.client.encrypt_batched(x)[0]
    out = benchmark.pedantic(engine.serve, args=("batched", per, batch), rounds=5, iterations=1)
    enc = engine.client.decrypt_batched(out, per)
    t0 = time.perf_counter()
    engine.client.encrypt_batched(x)
    encrypt_s = time.perf_counter() - t0
    info = {
        "engine": "ours",
        "packing": "batched",
        "model": name,
        "samples_per_batch": per,
        "samples_per_s_one_core": per / benchmark.stats.stats.median,
        "upload_MB_per_batch": sum(map(len, batch)) / 1e6,
        "download_MB_per_batch": sum(map(len, out)) / 1e6,
        "client_encrypt_s_per_batch": encrypt_s,
        **_accuracy(enc, plaintext(trained.model, x).reshape(len(x), -1)),
    }
    benchmark.extra_info.update(info)
    record_figures(server_ms_p50=1e3 * benchmark.stats.stats.median, **info)


def test_ours_batched_pool_two_cores(
    benchmark: Any,
    record_figures: Any,
    tmp_path: Any,
    models: dict[str, Trained],
    ours: dict[str, Ours],
) -> None:
    """Throughput through the process pool, one batch per core in flight (IPC included)."""
    engine, trained = ours["digits-mlp"], models["digits-mlp"]
    pool = HEPool(store_dir=tmp_path, workers=2)
    pool.start()
    try:
        pool.add_model(engine.compiled)
        cid = asyncio.run(pool.register_context("digits-mlp", engine.public, owner="bench"))
        per = engine.compiled.plan.batched.samples_per_ciphertext
        x = np.resize(trained.x_test, (per, 64))
        body = encode_request(
            InferenceRequest(cid, "batched", per, tuple(engine.client.encrypt_batched(x)[0]))
        )

        async def two_batches() -> None:
            await asyncio.gather(*(pool.infer("digits-mlp", body, owner="bench") for _ in range(4)))

        asyncio.run(two_batches())  # warm: each worker loads the keys and encodes weights once
        benchmark.pedantic(lambda: asyncio.run(two_batches()), rounds=3, iterations=1)
    finally:
        pool.close()
    rate = 4 * per / benchmark.stats.stats.median
    benchmark.extra_info.update({"engine": "ours-pool", "samples_per_s_two_workers": rate})
    record_figures(samples_per_s_two_workers=rate, engine="ours-pool", model="digits-mlp")


# --------------------------------------------------------------------------- tutorial TenSEAL
def _tutorial_context(
    degree: int, bits: list[int], scale_bits: int
) -> tuple[ts.Context, ts.Context, bytes]:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=bits)
    ctx.global_scale = 2**scale_bits
    ctx.generate_galois_keys()
    public = ctx.serialize(save_secret_key=False, save_galois_keys=True)
    return ctx, ts.context_from(public), public


@pytest.mark.parametrize("name", ["digits-mlp", "breast-cancer-lr"])
def test_tutorial_tenseal_single(
    benchmark: Any,
    record_figures: Any,
    models: dict[str, Trained],
    ours: dict[str, Ours],
    name: str,
) -> None:
    trained = models[name]
    stages = ours[name].compiled.stages  # the same folded weights
    if name == "digits-mlp":  # reference row "TS MLP": N=8192 [60,30,30,30,60], 2^30
        ctx, server_ctx, public = _tutorial_context(8192, [60, 30, 30, 30, 60], 30)
    else:  # reference row "TS LR": N=8192 [60,40,60], 2^40
        ctx, server_ctx, public = _tutorial_context(8192, [60, 40, 60], 40)
    w = [s.weight.T.tolist() for s in stages]
    b = [s.bias.tolist() for s in stages]

    def serve(data: bytes) -> bytes:
        v = ts.ckks_vector_from(server_ctx, data)
        if name == "digits-mlp":
            v = v.mm(w[0]) + b[0]
            v.square_()
            v = v.mm(w[1]) + b[1]
        else:
            v = v.dot([row[0] for row in w[0]]) + b[0]
        return v.serialize()

    x = trained.x_test
    data = ts.ckks_vector(ctx, x[0].tolist()).serialize()
    out = benchmark(serve, data)
    n = min(len(x), 60)  # the tutorial path is slow: accuracy on the first 60 samples
    enc = np.array(
        [
            ts.ckks_vector_from(ctx, serve(ts.ckks_vector(ctx, row.tolist()).serialize())).decrypt()
            for row in x[:n]
        ]
    )
    info = {
        "engine": "tutorial-tenseal",
        "packing": "single",
        "model": name,
        "public_context_MB": len(public) / 1e6,
        "ct_in_KB": len(data) / 1e3,
        "ct_out_KB": len(out) / 1e3,
        "client_encrypt_ms": _ms(lambda: ts.ckks_vector(ctx, x[0].tolist()).serialize()),
        **_accuracy(enc.reshape(n, -1), plaintext(trained.model, x[:n]).reshape(n, -1)),
    }
    benchmark.extra_info.update(info)
    record_figures(server_ms_p50=1e3 * benchmark.stats.stats.median, **info)


# --------------------------------------------------------------------------- plaintext
@pytest.mark.parametrize("name", ["digits-mlp", "breast-cancer-lr"])
def test_plaintext_torch(
    benchmark: Any, record_figures: Any, models: dict[str, Trained], name: str
) -> None:
    trained = models[name]
    x1 = torch.tensor(trained.x_test[:1], dtype=torch.float32)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return trained.model(x1)

    benchmark(run)
    xb = torch.tensor(
        np.resize(trained.x_test, (4096, trained.x_test.shape[1])), dtype=torch.float32
    )
    batch_ms = _ms(lambda: trained.model(xb), 10)
    info = {"engine": "plaintext-torch", "model": name, "batch4096_ms": batch_ms}
    benchmark.extra_info.update(info)
    record_figures(server_ms_p50=1e3 * benchmark.stats.stats.median, **info)
