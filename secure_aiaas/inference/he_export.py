"""A torch ``nn.Sequential`` -> the plain `secure_aiaas.stages` the HE compiler reads.

This is the one place that walks torch modules for `he/`: the compiler never sees torch. The
export translates layer by layer and copies parameters in their own dtype (it does no folding
or arithmetic: the compiler does that, reproducing each layer's own float arithmetic). Layers a
CKKS circuit cannot evaluate are refused here with the reason; eval-mode no-ops (Identity,
Dropout) are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from secure_aiaas import stages as st
from secure_aiaas.errors import InputError
from secure_aiaas.inference.layers import Polynomial, Square, Standardize

_NO_OPS = (nn.Identity, nn.Dropout)
_UNSUPPORTED = (
    "cannot be evaluated under encryption: use Linear/Conv2d/AvgPool/Flatten with Square or a "
    "degree-2 Polynomial activation"
)


def _array(tensor: Any) -> np.ndarray[Any, Any]:
    return tensor.detach().cpu().numpy().copy()  # type: ignore[no-any-return]


def _optional(tensor: Any) -> np.ndarray[Any, Any] | None:
    return None if tensor is None else _array(tensor)


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, tuple | list) else (int(value),) * dims


def _conv(module: nn.Conv1d | nn.Conv2d) -> st.Conv:
    if module.padding_mode != "zeros":
        raise InputError(f"layer {type(module).__name__} with padding_mode "
                         f"{module.padding_mode!r} {_UNSUPPORTED}")  # fmt: skip
    kernel = tuple(module.kernel_size)
    dims = len(kernel)
    dilation = _tuple(module.dilation, dims)
    padding: tuple[tuple[int, int], ...]
    if module.padding == "valid":
        padding = ((0, 0),) * dims
    elif module.padding == "same":  # torch pads the odd remainder after, as here
        totals = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        padding = tuple((t // 2, t - t // 2) for t in totals)
    else:
        padding = tuple((p, p) for p in _tuple(module.padding, dims))
    return st.Conv(
        weight=_array(module.weight),
        bias=_optional(module.bias),
        stride=_tuple(module.stride, dims),
        padding=padding,
        dilation=dilation,
        groups=module.groups,
    )


def _avg_pool(module: nn.AvgPool1d | nn.AvgPool2d) -> st.AvgPool:
    dims = 1 if isinstance(module, nn.AvgPool1d) else 2
    kernel = _tuple(module.kernel_size, dims)
    return st.AvgPool(
        kernel=kernel,
        stride=_tuple(module.stride, dims) if module.stride else kernel,
        padding=_tuple(module.padding, dims),
        ceil_mode=bool(module.ceil_mode),
        count_include_pad=bool(module.count_include_pad),
        divisor=getattr(module, "divisor_override", None),
    )


def _batch_norm(module: nn.BatchNorm1d | nn.BatchNorm2d) -> st.BatchNorm:
    if module.running_mean is None or module.running_var is None:
        raise InputError(f"layer {type(module).__name__} without running statistics "
                         f"{_UNSUPPORTED}")  # fmt: skip
    return st.BatchNorm(
        mean=_array(module.running_mean),
        var=_array(module.running_var),
        weight=_optional(module.weight),
        bias=_optional(module.bias),
        eps=float(module.eps),
    )


def _stage(module: nn.Module, last: bool) -> st.Stage | None:
    if isinstance(module, Standardize):
        return st.Standardize(_array(module.mean), _array(module.scale))
    if isinstance(module, nn.Linear):
        return st.Linear(_array(module.weight), _optional(module.bias))
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return _conv(module)
    if isinstance(module, nn.AvgPool1d | nn.AvgPool2d):
        return _avg_pool(module)
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        return _batch_norm(module)
    if isinstance(module, nn.Flatten):
        return st.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, Square):
        return st.Square()
    if isinstance(module, Polynomial):
        return st.Polynomial(tuple(float(c) for c in _array(module.coeffs)))
    if isinstance(module, nn.Sigmoid) and last:
        return st.Sigmoid()  # the client applies it to the decrypted logit
    if isinstance(module, _NO_OPS):
        return None
    raise InputError(f"layer {type(module).__name__} {_UNSUPPORTED}")


def export_stages(model: nn.Module) -> st.Stages:
    """The layers of `model` as numpy stages for `he.compile_model`.

    Raises:
        InputError: `model` is not an ``nn.Sequential``, or has a layer (ReLU, Tanh, MaxPool,
            a Sigmoid before the last layer, ...) that a CKKS circuit cannot evaluate.
    """
    if not isinstance(model, nn.Sequential):
        raise InputError("only torch.nn.Sequential models can be evaluated under encryption")
    modules = list(model)
    with torch.no_grad():
        exported = (_stage(m, i == len(modules) - 1) for i, m in enumerate(modules))
        return tuple(s for s in exported if s is not None)
