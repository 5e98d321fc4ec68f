"""Builders that rebuild a model from its manifest, so loading never unpickles.

``sequential``: a layer list in ``architecture_config["layers"]``, e.g.::

    [{"type": "standardize", "features": 64},
     {"type": "linear", "in_features": 64, "out_features": 32},
     {"type": "square"},
     {"type": "linear", "in_features": 32, "out_features": 10}]

builds ``nn.Sequential(Standardize, Linear, Square, Linear)``, whose state dict keys are
``"0.mean"``, ``"1.weight"`` ... The HE plan compiler reads the same list. Layers made only of
standardize / linear / square / polynomial are HE-compatible.

``minilm``: the BERT encoder of all-MiniLM-L6-v2 (see `inference.embeddings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from secure_aiaas.inference.layers import Polynomial, Square, Standardize

HE_LAYER_TYPES = frozenset({"standardize", "linear", "square", "polynomial"})
_MAX_FEATURES = 1 << 16


def _positive(spec: Mapping[str, Any], key: str, where: str) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _MAX_FEATURES:
        raise ValueError(f"{where}.{key}: expected an integer in 1..{_MAX_FEATURES}")
    return value


def _layer(spec: Mapping[str, Any], where: str) -> nn.Module:
    kind = spec.get("type")
    if kind == "standardize":
        n = _positive(spec, "features", where)
        return Standardize(torch.zeros(n), torch.ones(n))  # real values come from the weights
    if kind == "linear":
        bias = spec.get("bias", True)
        if not isinstance(bias, bool):
            raise ValueError(f"{where}.bias: expected a boolean")
        return nn.Linear(
            _positive(spec, "in_features", where), _positive(spec, "out_features", where), bias
        )
    if kind == "square":
        return Square()
    if kind == "polynomial":
        degree = _positive(spec, "degree", where)
        return Polynomial([0.0] * (degree + 1))
    if kind == "relu":
        return nn.ReLU()
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    raise ValueError(f"{where}.type: unknown layer type")


def build_sequential(config: Mapping[str, Any]) -> nn.Module:
    """``nn.Sequential`` from ``config["layers"]`` (weights still at their init values)."""
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > 64:
        raise ValueError("architecture_config.layers: expected a list of 1..64 layers")
    modules = []
    for index, spec in enumerate(layers):
        where = f"architecture_config.layers[{index}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: expected an object")  # noqa: TRY004 (manifest error)
        modules.append(_layer(spec, where))
    return nn.Sequential(*modules)


def sequential_is_he_compatible(config: Mapping[str, Any]) -> bool:
    """Whether every layer is one the CKKS evaluator supports."""
    layers = config.get("layers")
    return isinstance(layers, list) and all(
        isinstance(s, dict) and s.get("type") in HE_LAYER_TYPES for s in layers
    )


def sequential_config(model: nn.Sequential) -> dict[str, Any]:
    """The inverse of `build_sequential`, for the trainers."""
    layers: list[dict[str, Any]] = []
    for module in model:
        if isinstance(module, Standardize):
            layers.append({"type": "standardize", "features": module.mean.numel()})
        elif isinstance(module, nn.Linear):
            layers.append(
                {
                    "type": "linear",
                    "in_features": module.in_features,
                    "out_features": module.out_features,
                    "bias": module.bias is not None,
                }
            )
        elif isinstance(module, Square):
            layers.append({"type": "square"})
        elif isinstance(module, Polynomial):
            layers.append({"type": "polynomial", "degree": module.coeffs.numel() - 1})
        elif isinstance(module, nn.ReLU | nn.Sigmoid | nn.Tanh):
            layers.append({"type": type(module).__name__.lower()})
        else:
            raise TypeError(f"no manifest form for layer {type(module).__name__}")
    return {"layers": layers}


def _build_minilm(config: Mapping[str, Any]) -> nn.Module:
    from secure_aiaas.inference.embeddings import build_minilm  # only when a text model loads

    return build_minilm(config)


# name -> builder(architecture_config) -> module with init weights; the registry loads the
# safetensors state dict into it with strict=True (every key present, every shape equal).
BUILDERS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "sequential": build_sequential,
    "minilm": _build_minilm,
}


def build_module(
    architecture: str, config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Rebuild a module and load its weights; ValueError on any mismatch."""
    builder = BUILDERS.get(architecture)
    if builder is None:
        raise ValueError(f"architecture: unknown builder {architecture!r}")
    module = builder(config)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the architecture: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise ValueError(
                f"weights do not match the architecture: {key} has shape "
                f"{list(state_dict[key].shape)}, expected {list(tensor.shape)}"
            )
    module.load_state_dict(dict(state_dict), strict=True)
    return module.eval()
