"""Layers shared by the built-in models, the registry and the HE plan compiler.

Preprocessing is part of each model (clients send raw features), so it is a layer:
`Standardize` is an affine per-feature map the HE compiler folds into the next Linear.
`Square` is the HE-friendly activation (one ciphertext multiplication).
"""

# No `from __future__ import annotations`: TorchScript must read the buffers' annotations
# as types, not strings (tests/inference/test_registry.py scripts these layers).
import torch
from torch import nn


class Standardize(nn.Module):
    """y = (x - mean) * scale, per feature (pixel scaling: mean 0, scale 1/16)."""

    mean: torch.Tensor  # buffers (moved with the module, saved in its state dict)
    scale: torch.Tensor

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("scale", scale.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


class Square(nn.Module):
    """x ** 2: the activation a CKKS circuit evaluates with one multiplication."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Polynomial(nn.Module):
    """sum_i coeffs[i] * x**i: a fitted low-degree approximation of a non-polynomial activation."""

    coeffs: torch.Tensor

    def __init__(self, coeffs: list[float]) -> None:
        super().__init__()
        self.register_buffer("coeffs", torch.tensor(coeffs, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for power in range(len(self.coeffs) - 1, -1, -1):  # Horner
            out = out * x + self.coeffs[power]
        return out
