"""The CUDA path (skipped without CUDA): same answers as the CPU, batching on the device."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from secure_aiaas.errors import ConfigurationError
from secure_aiaas.inference import DynamicBatcher, ModelRegistry, select_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_forced_cuda_without_cuda_is_refused() -> None:
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda"
    else:
        with pytest.raises(ConfigurationError):
            select_device("cuda")
    assert select_device("cpu").type == "cpu"
    assert select_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", ["digits-mlp", "breast-cancer-lr"])
def test_tabular_models_agree_on_cuda(registry: ModelRegistry, name: str) -> None:
    on_cpu = registry.load(name, device="cpu")
    on_gpu = registry.load(name, device="cuda")
    assert next(on_gpu.module.parameters()).is_cuda  # type: ignore[attr-defined]
    width = registry.show(name).inputs[0].shape[1]
    x = np.random.default_rng(0).uniform(0, 16, size=(37, width)).astype(np.float32)
    cpu_out, gpu_out = on_cpu.predict(x), on_gpu.predict(x)
    for key in cpu_out:
        np.testing.assert_allclose(gpu_out[key], cpu_out[key], rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@cuda
def test_text_embed_on_cuda(registry: ModelRegistry, text_embed) -> None:  # type: ignore[no-untyped-def]
    on_gpu = registry.load("text-embed", device="cuda")
    texts = ["a sentence on the gpu", "another, somewhat longer, sentence"]
    np.testing.assert_allclose(
        on_gpu.predict(texts)["embedding"], text_embed.predict(texts)["embedding"], atol=1e-4
    )


@pytest.mark.gpu
@cuda
def test_batcher_on_cuda(registry: ModelRegistry) -> None:
    predictor = registry.load("digits-mlp", device="cuda")
    predictor.warmup(64)

    async def run() -> DynamicBatcher:
        batcher = DynamicBatcher(predictor, max_batch_size=64, max_delay_s=0.02)
        xs = [np.full((1, 64), i % 17, dtype=np.float32) for i in range(128)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in xs))
        await batcher.close()
        assert all(o["logits"].shape == (1, 10) for o in outs)
        return batcher

    assert max(asyncio.run(run()).stats().batch_rows) > 1


def test_torch_threads_are_configured_once_and_sensibly() -> None:
    from secure_aiaas.inference import configure_torch_threads
    from secure_aiaas.inference.device import describe

    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(1) == 1
        assert describe(torch.device("cpu")) == {"device": "cpu", "torch_threads": 1}
        assert 1 <= configure_torch_threads(None) <= 8
    finally:
        torch.set_num_threads(before)
