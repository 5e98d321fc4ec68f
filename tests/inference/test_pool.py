"""ModelPool: readiness waits for loaded, warm models; tampered models keep it not-ready."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secure_aiaas.errors import ConfigurationError, NotFoundError
from secure_aiaas.inference import (
    BatchingConfig,
    ModelPool,
    ModelRegistry,
    build_infer_response,
    parse_infer_request,
)

pytestmark = pytest.mark.anyio


async def test_start_serve_close(trained_dir: Path) -> None:
    pool = ModelPool(
        ModelRegistry(trained_dir),
        device="cpu",
        batching=BatchingConfig(max_batch_size=16, max_delay_s=0.001),
        overrides={"text-embed": BatchingConfig(max_batch_size=8)},
    )
    assert not pool.ready
    await pool.start()
    try:
        assert pool.ready and pool.failures == {}
        assert sorted(m.id for m in pool.manifests()) == [
            "breast-cancer-lr:1", "digits-mlp:1", "text-embed:1",
        ]  # fmt: skip
        served = pool.get("digits-mlp")
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                            "data": [0] * 64}]}  # fmt: skip
        request = parse_infer_request(body, served.manifest, max_batch=16)
        reply = build_infer_response(served.manifest, await served.infer(request.single))
        assert {o["name"] for o in reply["outputs"]} == {"logits", "probabilities", "label"}
        vectors = await pool.get("text-embed").infer(["hello world"])
        assert vectors["embedding"].shape == (1, 384)
        assert pool.get("text-embed").batcher.max_batch_size == 8
        assert {s.model for s in pool.stats()} >= {"digits-mlp:1", "text-embed:1"}
        with pytest.raises(NotFoundError):
            pool.get("nope")
        with pytest.raises(NotFoundError):
            pool.get("digits-mlp", "2")
    finally:
        await pool.close()
    assert not pool.ready


async def test_tampered_model_keeps_pool_not_ready(data_dir: Path) -> None:
    weights = data_dir / "models" / "digits-mlp" / "1" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    pool = ModelPool(ModelRegistry(data_dir), device="cpu")
    await pool.start()
    try:
        assert not pool.ready
        assert set(pool.failures) == {"digits-mlp:latest"}
        with pytest.raises(NotFoundError):
            pool.get("digits-mlp")  # never served
        out = await pool.get("breast-cancer-lr").infer(np.zeros((1, 30), dtype=np.float32))
        assert out["label"].shape == (1,)
    finally:
        await pool.close()
    strict = ModelPool(ModelRegistry(data_dir), models=["digits-mlp:1"], device="cpu")
    with pytest.raises(ConfigurationError):
        await strict.start(strict=True)
    await strict.close()


async def test_requests_larger_than_a_batch_are_split_and_joined(trained_dir: Path) -> None:
    pool = ModelPool(
        ModelRegistry(trained_dir), models=["digits-mlp"], device="cpu",
        batching=BatchingConfig(max_batch_size=8),
    )  # fmt: skip
    await pool.start()
    try:
        served = pool.get("digits-mlp")
        x = np.random.default_rng(1).integers(0, 17, size=(21, 64)).astype(np.float32)
        out = await served.infer(x)
        np.testing.assert_allclose(out["logits"], served.predictor.predict(x)["logits"], atol=1e-5)
        assert max(served.batcher.stats().batch_rows) <= 8
    finally:
        await pool.close()
