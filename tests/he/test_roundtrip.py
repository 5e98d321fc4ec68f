"""Encrypt -> evaluate -> decrypt with real SEAL ciphertexts, both packings, accuracy criteria."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from secure_aiaas.crypto.he_wire import decode_public_context
from secure_aiaas.he import CompiledModel, compile_model
from secure_aiaas.he.evaluator import EncodedModel, load_public_context, run_request
from secure_aiaas.inference import export_stages
from secure_aiaas.inference.layers import Polynomial, Square
from secure_aiaas.sdk.he import SecretContext
from tests.he.conftest import Trained, plaintext

pytestmark = pytest.mark.slow
LOGIT_TOLERANCE = 0.05


def _run(compiled: CompiledModel, x: np.ndarray, packing: str) -> np.ndarray:
    client = SecretContext.create(compiled.plan.to_json())
    keys = load_public_context(
        decode_public_context(client.public_context(), max_bytes=64 << 20), compiled.plan
    )
    model = EncodedModel.build(compiled)
    if packing == "single":
        out = run_request(model, keys, "single", len(x), tuple(client.encrypt_single(x)), 4 << 20)
        return client.decrypt_single(out)
    results = []
    for start, batch in zip(range(0, len(x), 4096), client.encrypt_batched(x), strict=True):
        n = min(len(x) - start, compiled.plan.batched.samples_per_ciphertext)
        out = run_request(model, keys, "batched", n, tuple(batch), 4 << 20)
        results.append(client.decrypt_batched(out, n))
    return np.concatenate(results)


def _check(model: nn.Module, encrypted: np.ndarray, x: np.ndarray) -> None:
    ref = plaintext(model, x).reshape(len(x), -1)
    assert encrypted.shape == ref.shape
    assert np.abs(encrypted - ref).max() <= LOGIT_TOLERANCE
    if ref.shape[1] > 1:
        agree = (encrypted.argmax(1) == ref.argmax(1)).mean()
    else:
        agree = ((encrypted[:, 0] > 0) == (ref[:, 0] > 0)).mean()
    assert agree >= 0.995


@pytest.mark.parametrize("packing", ["single", "batched"])
def test_digits_mlp(digits: Trained, compiled: dict[str, CompiledModel], packing: str) -> None:
    # single-sample on a subset (25 ms each); the batched packing covers the whole test set.
    x = digits.x_test[:40] if packing == "single" else digits.x_test
    _check(digits.model, _run(compiled["digits-mlp"], x, packing), x)


@pytest.mark.parametrize("packing", ["single", "batched"])
def test_breast_cancer_lr(
    breast_cancer: Trained, compiled: dict[str, CompiledModel], packing: str
) -> None:
    x = breast_cancer.x_test
    _check(breast_cancer.model, _run(compiled["breast-cancer-lr"], x, packing), x)


@pytest.mark.parametrize("packing", ["single", "batched"])
def test_cnn_with_polynomial_activation(packing: str) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.AvgPool2d(2),
        nn.Flatten(),
        Polynomial([0.1, 0.5, 0.25]),
        nn.Linear(8, 3),
    ).eval()
    x = np.random.default_rng(0).uniform(0, 1, (6, 1, 6, 6))
    compiled = compile_model(export_stages(model), "cnn", calibration=x, input_shape=(1, 6, 6))
    _check(model, _run(compiled, x.reshape(6, -1), packing), x)


def test_batched_only_deep_model() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 4), Square(), nn.Linear(4, 4), Square(), nn.Linear(4, 2))
    x = np.random.default_rng(1).uniform(-1, 1, (50, 5))
    compiled = compile_model(export_stages(model), "deep", calibration=x)
    assert compiled.plan.single is None
    _check(model, _run(compiled, x, "batched"), x)
