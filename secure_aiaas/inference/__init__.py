"""inference: model registry, loading, device placement, dynamic batching, v2 conversion.

Startup (the lifespan)::

    registry = ModelRegistry(settings.data_dir)
    pool = ModelPool(registry, device=..., batching=BatchingConfig(...))
    await pool.start()                    # load + SHA-256 check + warm up; pool.ready
    served = pool.get("digits-mlp")       # NotFoundError if absent
    body, tail = decode_infer_body(raw, request.headers.get("inference-header-content-length"))
    req = parse_infer_request(body, served.manifest, max_batch=..., binary=tail)
    outputs = await served.infer(req.single)     # OverloadedError when the queue is full
    content, header_length = encode_infer_response(served.manifest, outputs, req)
    # header_length None: application/json; else octet-stream + Inference-Header-Content-Length
    await pool.close()

For the HE compiler (plain data, no torch on the `he/` side)::

    stages = registry.he_stages("digits-mlp")             # export_stages(module), SHA-checked
    calibration = registry.he_calibration("digits-mlp")   # stored at training time, or None

Importing this package does not import torch; `load_predictor`, `select_device` and the
other torch-backed names load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secure_aiaas.inference.batcher import BatcherStats, BatchRecord, DynamicBatcher
from secure_aiaas.inference.calibration import HE_CALIBRATION_ASSET, encode_calibration
from secure_aiaas.inference.manifest import Manifest, TensorSpec
from secure_aiaas.inference.pool import BatchingConfig, ModelPool, ServedModel
from secure_aiaas.inference.registry import ModelRegistry
from secure_aiaas.inference.v2 import (
    InferRequest,
    build_infer_response,
    coerce_texts,
    decode_infer_body,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
    split_infer_body,
)

if TYPE_CHECKING:
    from secure_aiaas.inference.architectures import build_module
    from secure_aiaas.inference.device import configure_torch_threads, select_device
    from secure_aiaas.inference.he_export import export_stages
    from secure_aiaas.inference.predictor import Predictor, load_predictor

_LAZY = {
    "Predictor": "secure_aiaas.inference.predictor",
    "load_predictor": "secure_aiaas.inference.predictor",
    "select_device": "secure_aiaas.inference.device",
    "configure_torch_threads": "secure_aiaas.inference.device",
    "build_module": "secure_aiaas.inference.architectures",
    "export_stages": "secure_aiaas.inference.he_export",
}

__all__ = [
    "BatchRecord",
    "BatcherStats",
    "BatchingConfig",
    "DynamicBatcher",
    "HE_CALIBRATION_ASSET",
    "InferRequest",
    "Manifest",
    "ModelPool",
    "ModelRegistry",
    "Predictor",
    "ServedModel",
    "TensorSpec",
    "build_infer_response",
    "build_module",
    "coerce_texts",
    "configure_torch_threads",
    "decode_infer_body",
    "split_infer_body",
    "encode_calibration",
    "encode_infer_response",
    "export_stages",
    "load_predictor",
    "model_metadata",
    "parse_infer_request",
    "select_device",
]


def __getattr__(name: str) -> Any:
    # Torch-backed names import on first use, so `import secure_aiaas.inference` stays light.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
