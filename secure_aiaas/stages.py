"""Network stages as plain data: how `inference` hands a model's layers to `he`.

A network is a tuple of stages applied in order to one sample (the batch dim excluded)::

    (Standardize(mean, scale), Linear(w1, b1), Square(), Linear(w2, b2))

`inference.export_stages` produces it from a torch ``nn.Sequential`` (the only code that walks
torch modules); `he.compile_model` folds it into a CKKS plan. Only the layers a CKKS circuit can
evaluate have a stage: affine ones and degree-<=2 polynomials (a degree-3 `Polynomial` is
representable, the compiler refuses it with the reason), plus a trailing `Sigmoid` that the
client applies after decrypting.

Arrays are read-only copies kept in the trained layer's dtype (float32 or float64): the compiler
reproduces the layer's own arithmetic, so a plan's fingerprint does not depend on who exported
it. Comparison is by identity (arrays have no single truth value). Importing this module
imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from secure_aiaas.errors import InputError

Array: TypeAlias = npt.NDArray[Any]
_FLOATS = (np.float32, np.float64)


def _array(value: Any, what: str, ndim: int | tuple[int, ...]) -> Array:
    array = np.array(value, copy=True)
    if array.dtype.type not in _FLOATS:
        raise InputError(f"{what}: expected float32 or float64 values")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        raise InputError(f"{what}: expected {' or '.join(map(str, allowed))} dimensions")
    if not np.isfinite(array).all():
        raise InputError(f"{what}: values must be finite")
    array.setflags(write=False)
    return array


def _set(stage: object, name: str, value: object) -> None:
    object.__setattr__(stage, name, value)  # frozen dataclass: normalise in __post_init__


def _ints(value: tuple[int, ...], what: str, minimum: int) -> tuple[int, ...]:
    out = tuple(int(v) for v in value)
    if any(v < minimum for v in out):
        raise InputError(f"{what}: expected integers >= {minimum}")
    return out


@dataclass(frozen=True, eq=False)
class Standardize:
    """``y = (x - mean) * scale`` along the last axis (the models' own preprocessing)."""

    mean: Array
    scale: Array

    def __post_init__(self) -> None:
        _set(self, "mean", _array(self.mean, "Standardize.mean", 1))
        _set(self, "scale", _array(self.scale, "Standardize.scale", 1))
        if self.mean.shape != self.scale.shape:
            raise InputError("Standardize: mean and scale differ in length")


@dataclass(frozen=True, eq=False)
class Linear:
    """``y = x @ weight.T + bias``; `weight` is (out, in) as in torch."""

    weight: Array
    bias: Array | None = None

    def __post_init__(self) -> None:
        _set(self, "weight", _array(self.weight, "Linear.weight", 2))
        if self.bias is not None:
            _set(self, "bias", _array(self.bias, "Linear.bias", 1))
            if self.bias.shape[0] != self.weight.shape[0]:
                raise InputError("Linear: bias length differs from the output size")


@dataclass(frozen=True, eq=False)
class Conv:
    """1-D or 2-D cross-correlation over (channels, *spatial) with zero padding, as torch's.

    `weight` is (out_channels, in_channels / groups, *kernel); `padding` holds one
    (before, after) pair per spatial dim.
    """

    weight: Array
    bias: Array | None
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int = 1

    def __post_init__(self) -> None:
        _set(self, "weight", _array(self.weight, "Conv.weight", (3, 4)))
        dims = self.weight.ndim - 2
        if self.bias is not None:
            _set(self, "bias", _array(self.bias, "Conv.bias", 1))
            if self.bias.shape[0] != self.weight.shape[0]:
                raise InputError("Conv: bias length differs from the output channels")
        _set(self, "stride", _ints(self.stride, "Conv.stride", 1))
        _set(self, "dilation", _ints(self.dilation, "Conv.dilation", 1))
        _set(self, "padding", tuple(_ints(p, "Conv.padding", 0) for p in self.padding))
        if any(len(p) != 2 for p in self.padding):
            raise InputError("Conv.padding: expected (before, after) pairs")
        if not len(self.stride) == len(self.dilation) == len(self.padding) == dims:
            raise InputError("Conv: stride, padding and dilation need one entry per spatial dim")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise InputError("Conv.groups: must divide the output channels")


@dataclass(frozen=True, eq=False)
class AvgPool:
    """1-D or 2-D average pooling over (channels, *spatial), with torch's window rules.

    `divisor` replaces the window size as the denominator when set (torch's
    ``divisor_override``); `count_include_pad` counts padded positions in the window size.
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor: int | None = None

    def __post_init__(self) -> None:
        _set(self, "kernel", _ints(self.kernel, "AvgPool.kernel", 1))
        _set(self, "stride", _ints(self.stride, "AvgPool.stride", 1))
        _set(self, "padding", _ints(self.padding, "AvgPool.padding", 0))
        if not len(self.kernel) == len(self.stride) == len(self.padding) in (1, 2):
            raise InputError("AvgPool: kernel, stride and padding need one entry per spatial dim")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel, strict=True)):
            raise InputError("AvgPool.padding: at most half the kernel")
        if self.divisor is not None and self.divisor < 1:
            raise InputError("AvgPool.divisor: expected a positive integer")


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Eval-mode batch norm over axis 0 of a sample (its channels), from the running stats."""

    mean: Array
    var: Array
    weight: Array | None
    bias: Array | None
    eps: float

    def __post_init__(self) -> None:
        _set(self, "mean", _array(self.mean, "BatchNorm.mean", 1))
        _set(self, "var", _array(self.var, "BatchNorm.var", 1))
        for name in ("weight", "bias"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, _array(value, f"BatchNorm.{name}", 1))
        sizes = {a.shape for a in (self.mean, self.var, self.weight, self.bias) if a is not None}
        if len(sizes) != 1:
            raise InputError("BatchNorm: statistics and parameters differ in length")
        if not self.eps >= 0.0 or (self.var + self.eps <= 0).any():
            raise InputError("BatchNorm: var + eps must be positive")


@dataclass(frozen=True)
class Flatten:
    """Merge dims `start_dim`..`end_dim` (torch numbering: dim 0 is the batch, so start >= 1)."""

    start_dim: int = 1
    end_dim: int = -1

    def __post_init__(self) -> None:
        if self.start_dim < 1:
            raise InputError("Flatten.start_dim: the batch dim (0) cannot be flattened")


@dataclass(frozen=True)
class Square:
    """``x ** 2``: the activation a CKKS circuit evaluates with one multiplication."""


@dataclass(frozen=True)
class Polynomial:
    """``sum_i coeffs[i] * x ** i``, a fitted low-degree stand-in for a non-polynomial activation."""

    coeffs: tuple[float, ...]

    def __post_init__(self) -> None:
        coeffs = tuple(float(c) for c in self.coeffs)
        if not coeffs or not all(np.isfinite(coeffs)):
            raise InputError("Polynomial.coeffs: expected at least one finite coefficient")
        _set(self, "coeffs", coeffs)


@dataclass(frozen=True)
class Sigmoid:
    """The logistic function, allowed as the last stage only: the client applies it."""


Stage: TypeAlias = (
    Standardize | Linear | Conv | AvgPool | BatchNorm | Flatten | Square | Polynomial | Sigmoid
)
Stages: TypeAlias = tuple[Stage, ...]
