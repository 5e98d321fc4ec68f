"""The built-in models reach their accuracy targets, recomputed from the registered weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from secure_aiaas.inference import ModelRegistry
from secure_aiaas.inference.layers import Square, Standardize
from secure_aiaas.training import ensure_builtin_models, train
from secure_aiaas.training.tabular import cancer_splits, digits_splits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_digits_accuracy_recomputed_from_registry(registry: ModelRegistry) -> None:
    predictor = registry.load("digits-mlp", device="cpu")
    x_test, y_test = digits_splits(seed=0)["test"]
    labels = predictor.predict(x_test)["label"]  # raw 0-16 pixels in, preprocessing inside
    accuracy = float((labels == y_test).mean())
    assert accuracy >= 0.95
    assert registry.show("digits-mlp").metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_breast_cancer_accuracy_recomputed_from_registry(registry: ModelRegistry) -> None:
    predictor = registry.load("breast-cancer-lr", device="cpu")
    x_test, y_test = cancer_splits(seed=0)["test"]
    outputs = predictor.predict(x_test)
    accuracy = float((outputs["label"] == y_test).mean())
    assert accuracy >= 0.95
    assert registry.show("breast-cancer-lr").metrics["test_accuracy"] == pytest.approx(accuracy)
    probability = outputs["probability"][:, 0]
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-outputs["logit"][:, 0])), rtol=1e-5)


def test_architectures_are_exactly_what_the_he_engine_compiles(registry: ModelRegistry) -> None:
    digits = registry.load("digits-mlp", device="cpu").module  # type: ignore[attr-defined]
    assert [type(m) for m in digits] == [Standardize, nn.Linear, Square, nn.Linear]
    assert torch.equal(digits[0].mean, torch.zeros(64))
    assert torch.allclose(digits[0].scale, torch.full((64,), 1 / 16))
    assert (digits[1].in_features, digits[1].out_features) == (64, 32)
    cancer = registry.load("breast-cancer-lr", device="cpu").module  # type: ignore[attr-defined]
    assert [type(m) for m in cancer] == [Standardize, nn.Linear]
    x_train = cancer_splits(seed=0)["train"][0]
    np.testing.assert_allclose(cancer[0].mean.numpy(), x_train.mean(axis=0), rtol=1e-4)
    assert registry.show("breast-cancer-lr").he_compatible
    assert not registry.show("text-embed").he_compatible


@pytest.mark.parametrize("name", ["digits-mlp", "breast-cancer-lr"])
def test_manifest_curve_and_training_record(registry: ModelRegistry, name: str) -> None:
    manifest = registry.show(name)
    directory = registry.path(name)
    assert manifest.curve_file == "curve.png"
    assert (directory / "curve.png").read_bytes()[:8] == PNG_MAGIC
    assert manifest.training["seed"] == 0
    assert manifest.training["n_test"] > 100
    on_disk = json.loads((directory / "manifest.json").read_text())
    assert on_disk["weights_sha256"] == manifest.weights_sha256


def test_training_is_deterministic(tmp_path: Path, registry: ModelRegistry) -> None:
    again = train("breast-cancer-lr", tmp_path, version="1", progress=False)
    assert again.weights_sha256 == registry.show("breast-cancer-lr").weights_sha256


def test_ensure_builtin_models_trains_only_what_is_missing(data_dir: Path) -> None:
    ModelRegistry(data_dir).remove("breast-cancer-lr")
    trained = ensure_builtin_models(data_dir, progress=False)
    assert [m.name for m in trained] == ["breast-cancer-lr"]
    assert ensure_builtin_models(data_dir, progress=False) == []
