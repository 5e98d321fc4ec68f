"""Models with fixed, seeded weights in the built-ins' architectures (no training, no BLAS sums).

Their plans were recorded with the torch-probing compiler of commit 76df17c (before `he/`
compiled from numpy stages); `test_plan_identity.py` checks today's compiler reproduces them
bit for bit. Weights come from numpy's seeded generator and calibration rows straight from
scikit-learn's bundled data, so the inputs are the same on every machine.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from torch import nn

from secure_aiaas.inference.layers import Polynomial, Square, Standardize


def _set(module: nn.Module, **arrays: np.ndarray) -> None:
    with torch.no_grad():
        for name, value in arrays.items():
            getattr(module, name).copy_(torch.from_numpy(value.astype(np.float32)))


def digits_mlp() -> tuple[nn.Sequential, np.ndarray]:
    """digits-mlp's layers: Standardize(0, 1/16) -> Linear(64, 32) -> Square -> Linear(32, 10)."""
    rng = np.random.default_rng(1301)
    first, second = nn.Linear(64, 32), nn.Linear(32, 10)
    _set(first, weight=rng.normal(0, 0.15, (32, 64)), bias=rng.normal(0, 0.1, 32))
    _set(second, weight=rng.normal(0, 0.2, (10, 32)), bias=rng.normal(0, 0.1, 10))
    model = nn.Sequential(
        Standardize(torch.zeros(64), torch.full((64,), 1 / 16)), first, Square(), second
    ).eval()
    return model, load_digits().data[:512].astype(np.float32)


def breast_cancer_lr() -> tuple[nn.Sequential, np.ndarray]:
    """breast-cancer-lr's layers: Standardize(mean, 1/std) -> Linear(30, 1)."""
    rng = np.random.default_rng(1302)
    raw = load_breast_cancer().data
    mean = raw[:64].max(axis=0) * rng.uniform(0.3, 0.7, 30)  # no reductions: exact everywhere
    scale = 1.0 / (raw[:64].max(axis=0) * rng.uniform(0.1, 0.5, 30))
    linear = nn.Linear(30, 1)
    _set(linear, weight=rng.normal(0, 0.5, (1, 30)), bias=rng.normal(0, 0.1, 1))
    model = nn.Sequential(
        Standardize(torch.from_numpy(mean).float(), torch.from_numpy(scale).float()), linear
    ).eval()
    return model, raw[:512].astype(np.float32)


def small_cnn() -> tuple[nn.Sequential, np.ndarray]:
    """Conv2d -> AvgPool2d -> Flatten -> Polynomial -> Linear -> Sigmoid, on 1x6x6 inputs."""
    rng = np.random.default_rng(1303)
    conv, linear = nn.Conv2d(1, 2, 3), nn.Linear(8, 1)
    _set(conv, weight=rng.normal(0, 0.3, (2, 1, 3, 3)), bias=rng.normal(0, 0.1, 2))
    _set(linear, weight=rng.normal(0, 0.3, (1, 8)), bias=rng.normal(0, 0.1, 1))
    model = nn.Sequential(
        conv, nn.AvgPool2d(2), nn.Flatten(), Polynomial([0.1, 0.5, 0.25]), linear, nn.Sigmoid()
    ).eval()
    return model, rng.uniform(0, 1, (32, 1, 6, 6)).astype(np.float32)
