"""The linear stages as dense matrices, found by running their numpy forward on a basis.

Each affine stage is applied to ``[0, e_1, ..., e_n]`` (the origin and the identity basis) in
the dtype of its parameters, as the layer itself computes, then differenced in float64: row 0 is
the offset, the others the columns of the matrix. A conv becomes its im2col product written
out densely. Probing in the layer's own arithmetic keeps plans (and their fingerprints)
identical to those made by probing the torch layers, which this replaced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from secure_aiaas import stages as st
from secure_aiaas.errors import InputError
from secure_aiaas.stages import Array

# Widest layer input or output compiled: the probe holds (width + 1) x width values, and the
# batched packing sends one ciphertext per input feature.
MAX_WIDTH = 4096

AffineStage = st.Standardize | st.Linear | st.Conv | st.AvgPool | st.BatchNorm | st.Flatten
AFFINE_TYPES = (st.Standardize, st.Linear, st.Conv, st.AvgPool, st.BatchNorm, st.Flatten)


def _dtype(stage: AffineStage) -> type[np.floating[Any]]:
    # Like a torch layer: float64 parameters compute in float64, all else in float32.
    first = next((v for v in vars(stage).values() if isinstance(v, np.ndarray)), None)
    return np.float64 if first is not None and first.dtype == np.float64 else np.float32


def _channels(x: Array, stage: str, expected: int) -> None:
    if x.ndim < 2 or x.shape[1] != expected:
        raise InputError(f"{stage} expects {expected} channels, got shape {list(x.shape[1:])}")


def _standardize(x: Array, stage: st.Standardize) -> Array:
    if x.shape[-1] != stage.mean.shape[0]:
        raise InputError(f"Standardize expects {stage.mean.shape[0]} features")
    return (x - stage.mean) * stage.scale


def _linear(x: Array, stage: st.Linear) -> Array:
    if x.shape[-1] != stage.weight.shape[1]:
        raise InputError(f"Linear expects {stage.weight.shape[1]} features, got {x.shape[-1]}")
    out = x @ stage.weight.T
    return out if stage.bias is None else out + stage.bias


def _conv(x: Array, stage: st.Conv) -> Array:
    dims = stage.weight.ndim - 2
    out_channels, group_in = stage.weight.shape[:2]
    groups = stage.groups
    _channels(x, "Conv", group_in * groups)
    if x.ndim != dims + 2:
        raise InputError(f"Conv expects {dims} spatial dims, got shape {list(x.shape[1:])}")
    x = np.pad(x, [(0, 0), (0, 0), *stage.padding])
    kernel = stage.weight.shape[2:]
    sizes = [
        (x.shape[2 + d] - stage.dilation[d] * (kernel[d] - 1) - 1) // stage.stride[d] + 1
        for d in range(dims)
    ]
    if min(sizes) < 1:
        raise InputError("Conv: the kernel is larger than its (padded) input")
    _check_width(out_channels * math.prod(sizes), "Conv output")
    xg = x.reshape(x.shape[0], groups, group_in, *x.shape[2:])
    wg = stage.weight.reshape(groups, out_channels // groups, group_in, *kernel)
    out = np.zeros((x.shape[0], groups, out_channels // groups, *sizes), dtype=x.dtype)
    spatial = "hw"[:dims]
    for offset in np.ndindex(*kernel):
        window = tuple(
            slice(o * dil, o * dil + step * (n - 1) + 1, step)
            for o, dil, step, n in zip(offset, stage.dilation, stage.stride, sizes, strict=True)
        )
        patch = xg[(slice(None),) * 3 + window]
        taps = wg[(slice(None),) * 3 + offset]
        out += np.einsum(f"bgc{spatial},goc->bgo{spatial}", patch, taps)
    out = out.reshape(x.shape[0], out_channels, *sizes)
    if stage.bias is not None:
        out = out + stage.bias.reshape(1, -1, *([1] * dims))
    return out


def _pool_windows(
    size: int, kernel: int, stride: int, pad: int, stage: st.AvgPool
) -> tuple[Array, Array, Array]:
    """Per output position: its 0/1 window row and its size with and without the padding."""
    span = size + 2 * pad - kernel
    count = (-(-span // stride) if stage.ceil_mode else span // stride) + 1
    if stage.ceil_mode and (count - 1) * stride >= size + pad:
        count -= 1  # torch: the last window must start inside the input or the left padding
    if count < 1:
        raise InputError("AvgPool: the kernel is larger than its (padded) input")
    rows, padded, inside = np.zeros((count, size)), np.zeros(count), np.zeros(count)
    for o in range(count):
        start = o * stride - pad
        end = min(start + kernel, size + pad)
        padded[o] = end - start
        lo, hi = max(start, 0), min(end, size)
        rows[o, lo:hi] = 1.0
        inside[o] = hi - lo
    return rows, padded, inside


def _avg_pool(x: Array, stage: st.AvgPool) -> Array:
    dims = len(stage.kernel)
    if x.ndim != dims + 2:
        raise InputError(f"AvgPool expects {dims} spatial dims, got shape {list(x.shape[1:])}")
    windows = [
        _pool_windows(x.shape[2 + d], stage.kernel[d], stage.stride[d], stage.padding[d], stage)
        for d in range(dims)
    ]
    rows = [w[0].astype(x.dtype) for w in windows]
    if dims == 1:
        summed = np.einsum("bcl,ol->bco", x, rows[0])
    else:
        summed = np.einsum("bchw,oh,pw->bcop", x, rows[0], rows[1])
    if stage.divisor is not None:
        divisor: Array = np.asarray(stage.divisor, dtype=x.dtype)
    else:
        sizes = [w[1] if stage.count_include_pad else w[2] for w in windows]
        divisor = (sizes[0] if dims == 1 else np.outer(sizes[0], sizes[1])).astype(x.dtype)
    return summed / divisor  # type: ignore[no-any-return]


def _batch_norm(x: Array, stage: st.BatchNorm) -> Array:
    _channels(x, "BatchNorm", stage.mean.shape[0])
    shape = (1, -1, *([1] * (x.ndim - 2)))
    y = (x - stage.mean.reshape(shape)) / np.sqrt(stage.var.reshape(shape) + stage.eps)
    if stage.weight is not None:
        y = y * stage.weight.reshape(shape)
    if stage.bias is not None:
        y = y + stage.bias.reshape(shape)
    return y.astype(x.dtype, copy=False)


def _flatten(x: Array, stage: st.Flatten) -> Array:
    end = stage.end_dim + x.ndim if stage.end_dim < 0 else stage.end_dim
    if not stage.start_dim <= end < x.ndim:
        raise InputError(f"Flatten({stage.start_dim}, {stage.end_dim}) does not fit shape "
                         f"{list(x.shape[1:])}")  # fmt: skip
    return x.reshape(*x.shape[: stage.start_dim], -1, *x.shape[end + 1 :])


_FORWARD: dict[type, Callable[[Array, Any], Array]] = {
    st.Standardize: _standardize,
    st.Linear: _linear,
    st.Conv: _conv,
    st.AvgPool: _avg_pool,
    st.BatchNorm: _batch_norm,
    st.Flatten: _flatten,
}


def _check_width(width: int, what: str) -> None:
    if width > MAX_WIDTH:
        raise InputError(f"{what} has {width} values; at most {MAX_WIDTH} under encryption")


def label(stage: AffineStage, in_shape: tuple[int, ...]) -> str:
    """The layer name a plan's summary shows (torch's names, e.g. ``Conv2d``)."""
    if isinstance(stage, st.Conv):
        return f"Conv{stage.weight.ndim - 2}d"
    if isinstance(stage, st.AvgPool):
        return f"AvgPool{len(stage.kernel)}d"
    if isinstance(stage, st.BatchNorm):
        return "BatchNorm2d" if len(in_shape) == 3 else "BatchNorm1d"
    return type(stage).__name__


def dense(stage: AffineStage, in_shape: tuple[int, ...]) -> tuple[Array, Array, tuple[int, ...]]:
    """Matrix, offset and output shape of an affine stage on inputs of shape `in_shape`."""
    dim = math.prod(in_shape)
    _check_width(dim, f"{label(stage, in_shape)} input")
    basis = np.concatenate([np.zeros((1, dim)), np.eye(dim)]).reshape(dim + 1, *in_shape)
    out = _FORWARD[type(stage)](basis.astype(_dtype(stage)), stage).astype(np.float64)
    out_shape = tuple(int(d) for d in out.shape[1:])
    _check_width(math.prod(out_shape), f"{label(stage, in_shape)} output")
    flat = out.reshape(dim + 1, -1)
    offset = flat[0]
    return (flat[1:] - offset).T.copy(), offset.copy(), out_shape
