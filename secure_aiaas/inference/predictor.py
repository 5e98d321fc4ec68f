"""Loaded models: the synchronous half the batcher runs in its worker thread.

A `Predictor` turns one *batch* (requests already concatenated along dim 0) into named output
arrays in one forward pass. Outputs follow the task's conventions:

=====================  =============================================
task                   output names (any subset, declared in manifest)
=====================  =============================================
classification         logits, probabilities, label
binary-classification  logit, probability, label
regression             output
embedding              embedding
=====================  =============================================
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from secure_aiaas.inference.manifest import Manifest

OUTPUTS_BY_TASK: dict[str, frozenset[str]] = {
    "classification": frozenset({"logits", "probabilities", "label"}),
    "binary-classification": frozenset({"logit", "probability", "label"}),
    "regression": frozenset({"output"}),
    "embedding": frozenset({"embedding"}),
}
NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


class Predictor(Protocol):
    """What the batcher drives; `predict` runs off the event loop, one batch at a time."""

    manifest: Manifest
    device: torch.device

    def collate(self, items: Sequence[Any]) -> Any:
        """Concatenate request inputs along the batch dim."""

    def rows(self, item: Any) -> int:
        """Batch rows in one request input."""

    def predict(self, batch: Any) -> dict[str, np.ndarray]:
        """One forward pass over `batch`; arrays indexed by row along dim 0."""

    def warmup(self, max_batch_size: int) -> None:
        """Run representative batches so the first request pays no one-off costs."""


def _postprocess(task: str, wanted: Sequence[str], raw: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in wanted:
        if name in ("logits", "logit", "output", "embedding"):
            out[name] = raw
        elif name == "probabilities":
            out[name] = torch.softmax(raw, dim=1)
        elif name == "probability":
            out[name] = torch.sigmoid(raw)
        elif name == "label" and task == "classification":
            out[name] = raw.argmax(dim=1)
        elif name == "label":
            out[name] = (raw[:, 0] > 0).long()  # logit > 0 <=> probability > 0.5
    return out


class TensorPredictor:
    """A numeric model (safetensors + builder, or TorchScript) taking one FP tensor input."""

    def __init__(self, manifest: Manifest, module: nn.Module, device: torch.device) -> None:
        unknown = {o.name for o in manifest.outputs} - OUTPUTS_BY_TASK[manifest.task]
        if unknown:
            raise ValueError(f"outputs: {sorted(unknown)} are not outputs of task {manifest.task}")
        spec = manifest.inputs[0]
        if spec.datatype not in ("FP16", "FP32", "FP64"):
            raise ValueError("inputs[0].datatype: numeric models take FP16/FP32/FP64")
        self.manifest = manifest
        self.device = device
        self.module = module.to(device).eval()
        self._dtype = NUMPY_DTYPES[spec.datatype]
        self._feature_shape = tuple(spec.shape[1:])
        self._outputs = [o.name for o in manifest.outputs]
        self._pin = device.type == "cuda"

    def collate(self, items: Sequence[np.ndarray]) -> np.ndarray:
        batch = items[0] if len(items) == 1 else np.concatenate(items, axis=0)
        return np.ascontiguousarray(batch, dtype=self._dtype)

    def rows(self, item: np.ndarray) -> int:
        return int(item.shape[0])

    def predict(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            if self._pin:
                x = x.pin_memory().to(self.device, non_blocking=True)
            raw = self.module(x)
            if raw.dim() == 1:
                raw = raw.unsqueeze(1)
            outputs = _postprocess(self.manifest.task, self._outputs, raw)
            return {name: t.cpu().numpy() for name, t in outputs.items()}

    def warmup(self, max_batch_size: int) -> None:
        for rows in sorted({1, max(1, max_batch_size)}):
            self.predict(np.zeros((rows, *self._feature_shape), dtype=self._dtype))


class TextEmbedPredictor:
    """text-embed: lists of strings -> (n, dim) unit vectors."""

    def __init__(
        self, manifest: Manifest, module: nn.Module, tokenizer: Any, device: torch.device
    ) -> None:
        self.manifest = manifest
        self.device = device
        self.module = module.to(device).eval()
        self.tokenizer = tokenizer

    def collate(self, items: Sequence[list[str]]) -> list[str]:
        if len(items) == 1:
            return items[0]
        return [text for item in items for text in item]

    def rows(self, item: list[str]) -> int:
        return len(item)

    def predict(self, batch: list[str]) -> dict[str, np.ndarray]:
        from secure_aiaas.inference.embeddings import tokenize

        ids, mask = tokenize(self.tokenizer, batch)
        with torch.inference_mode():
            vectors = self.module(
                torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
            )
            return {"embedding": vectors.float().cpu().numpy()}

    def warmup(self, max_batch_size: int) -> None:
        self.predict(["warm up"])
        self.predict(["warm up the encoder with a longer sentence"] * max(1, max_batch_size))


def check_outputs(predictor: Predictor, sample: Any) -> None:
    """Run `sample` and compare the outputs with the manifest; ValueError on any mismatch."""
    outputs = predictor.predict(sample)
    rows = predictor.rows(sample)
    for spec in predictor.manifest.outputs:
        array = outputs.get(spec.name)
        if array is None:
            raise ValueError(f"outputs: model produced no {spec.name!r}")
        expected = [rows, *spec.shape[1:]]
        if array.ndim != len(expected) or any(
            e != -1 and e != got for e, got in zip(expected, array.shape, strict=True)
        ):
            raise ValueError(
                f"outputs: {spec.name!r} has shape {list(array.shape)}, manifest says {spec.shape}"
            )


def load_predictor(
    manifest: Manifest,
    directory: Path,
    *,
    device: str | torch.device | None = None,
    validate: bool = False,
) -> Predictor:
    """Check SHA-256s, rebuild the model from the manifest, and place it on `device`.

    Each file is read once and the bytes that were hashed are the bytes that get parsed, so
    a file swapped after the check is never used.

    Raises:
        InputError: code ``integrity_check_failed`` on a digest mismatch.
        ValueError: weights or assets that do not fit the manifest.
    """
    from secure_aiaas.inference.architectures import build_module, sequential_is_he_compatible
    from secure_aiaas.inference.device import select_device
    from secure_aiaas.inference.registry import _integrity_error, sha256_bytes

    if manifest.task == "text-generation":
        raise ValueError("text-generation models are loaded by secure_aiaas.llm, not as predictors")
    target = device if isinstance(device, torch.device) else select_device(device)
    data = (directory / manifest.weights_file).read_bytes()
    if sha256_bytes(data) != manifest.weights_sha256:
        raise _integrity_error(f"{manifest.id} weights")
    assets: dict[str, bytes] = {}
    for file_name, digest in manifest.assets.items():
        assets[file_name] = (directory / file_name).read_bytes()
        if sha256_bytes(assets[file_name]) != digest:
            raise _integrity_error(f"{manifest.id} asset {file_name}")

    module: nn.Module
    if manifest.format == "safetensors":
        from safetensors.torch import load as load_safetensors

        try:
            state = load_safetensors(data)
        except Exception as exc:  # SafetensorError is not an OSError/ValueError subclass
            raise ValueError("weights are not a valid safetensors file") from exc
        module = build_module(manifest.architecture, manifest.architecture_config, state)
    else:
        try:
            # TorchScript archives hold code + tensors, not arbitrary pickled Python objects.
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ValueError("weights are not a valid TorchScript archive") from exc
    if manifest.he_compatible and not (
        manifest.architecture == "sequential"
        and sequential_is_he_compatible(manifest.architecture_config)
    ):
        raise ValueError("he_compatible: only standardize/linear/square/polynomial layers are")

    predictor: Predictor
    sample: Any
    if manifest.task == "embedding":
        from secure_aiaas.inference.embeddings import load_tokenizer

        if "tokenizer.json" not in assets:
            raise ValueError("assets: an embedding model needs tokenizer.json")
        tokenizer = load_tokenizer(assets["tokenizer.json"].decode("utf-8"))
        predictor = TextEmbedPredictor(manifest, module, tokenizer, target)
        sample = ["a sentence", "another"]
    else:
        predictor = TensorPredictor(manifest, module, target)
        feature_shape = [1 if d == -1 else d for d in manifest.inputs[0].shape[1:]]
        sample = np.zeros((2, *feature_shape), dtype=NUMPY_DTYPES[manifest.inputs[0].datatype])
    if validate:
        check_outputs(predictor, sample)
    return predictor
