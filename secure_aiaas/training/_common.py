"""Shared training loop, learning curve and registration for the built-in models."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from secure_aiaas.inference.calibration import HE_CALIBRATION_ASSET, encode_calibration
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry


@dataclass
class History:
    """Per-epoch figures the curve plots (accuracy on the validation split, never test)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    seed: int


def _as_tensors(x: np.ndarray, y: np.ndarray, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.from_numpy(y.astype(np.float32 if target == "binary" else np.int64))
    return torch.from_numpy(x.astype(np.float32)), labels


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, target: str) -> tuple[float, float]:
    """(loss, accuracy) of `model` on a split; `target` is "binary" or "multiclass"."""
    inputs, labels = _as_tensors(x, y, target)
    with torch.inference_mode():
        out = model(inputs)
        if target == "binary":
            logits = out.reshape(-1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
            correct = ((logits > 0).float() == labels).float().mean()
        else:
            loss = nn.functional.cross_entropy(out, labels)
            correct = (out.argmax(dim=1) == labels).float().mean()
    return float(loss), float(correct)


def fit(
    model: nn.Module,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    config: FitConfig,
    *,
    target: str,
    progress: bool,
    desc: str,
) -> History:
    """Mini-batch Adam with a seeded shuffle; deterministic on a given machine."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x_train, y_train = _as_tensors(*splits["train"], target)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
        (lambda out, y: nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), y))
        if target == "binary"
        else nn.functional.cross_entropy
    )
    history = History()
    bar = tqdm(range(config.epochs), desc=desc, unit="epoch", disable=not progress, leave=True)
    for _ in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        model.eval()
        train_loss, train_acc = evaluate(model, *splits["train"], target)
        val_loss, val_acc = evaluate(model, *splits["val"], target)
        history.train_loss.append(train_loss)
        history.train_accuracy.append(train_acc)
        history.val_loss.append(val_loss)
        history.val_accuracy.append(val_acc)
        bar.set_postfix(loss=f"{train_loss:.4f}", val_acc=f"{val_acc:.3f}")
    bar.close()
    return history


def save_curve(history: History, path: Path, title: str) -> None:
    """Loss and accuracy per epoch as a PNG (Agg canvas: no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    epochs = range(1, len(history.train_loss) + 1)
    loss_ax, acc_ax = figure.subplots(1, 2)
    loss_ax.plot(epochs, history.train_loss, label="train")
    loss_ax.plot(epochs, history.val_loss, label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.plot(epochs, history.train_accuracy, label="train")
    acc_ax.plot(epochs, history.val_accuracy, label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.0, 1.01))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, format="png")


def register_trained(
    registry: ModelRegistry,
    manifest: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    history: History | None,
    *,
    assets: dict[str, Path] | None = None,
    he_calibration: np.ndarray | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Write weights (the curve, the HE calibration inputs) to a scratch dir and register them.

    `he_calibration`: raw inputs for the HE compiler's headroom, stored as the hashed asset
    ``he-calibration.npy`` so serving never recomputes them from the training data.
    """
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="saiaas-train-") as scratch:
        assets = dict(assets or {})
        if he_calibration is not None:
            assets[HE_CALIBRATION_ASSET] = Path(scratch) / HE_CALIBRATION_ASSET
            assets[HE_CALIBRATION_ASSET].write_bytes(encode_calibration(he_calibration))
        weights = Path(scratch) / "weights.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, weights)
        curve = None
        if history is not None:
            curve = Path(scratch) / "curve.png"
            save_curve(history, curve, f"{manifest['name']} v{manifest['version']}")
        return registry.register(manifest, weights, assets=assets, curve=curve, overwrite=overwrite)


class Timer:
    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = round(time.perf_counter() - self.start, 3)
