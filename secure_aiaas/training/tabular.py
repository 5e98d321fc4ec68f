"""digits-mlp and breast-cancer-lr: small HE-friendly models on scikit-learn's bundled data.

Both datasets ship inside scikit-learn (no download). Splits are stratified and seeded:
64% train, 16% validation (the curve), 20% test (the manifest's test metrics, used once).
Preprocessing is the model's first layer, so clients send raw features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from secure_aiaas.inference.architectures import sequential_config
from secure_aiaas.inference.layers import Square, Standardize
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry
from secure_aiaas.training._common import FitConfig, Timer, evaluate, fit, register_trained

DIGITS_CONFIG = FitConfig(epochs=40, lr=0.01, batch_size=32, weight_decay=1e-4, seed=0)
CANCER_CONFIG = FitConfig(epochs=60, lr=0.02, batch_size=32, weight_decay=1e-4, seed=0)
# Raw training rows stored with each model for the HE compiler's headroom (its calibration).
CALIBRATION_ROWS = 512


def _splits(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=seed, stratify=y_rest
    )
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


def digits_splits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw 0-16 pixel features and labels, split as the trainer splits them."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return _splits(data.data.astype(np.float32), data.target.astype(np.int64), seed)


def cancer_splits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw (unstandardised) features and 0/1 labels (1 = benign), split as trained."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return _splits(data.data.astype(np.float32), data.target.astype(np.int64), seed)


def _training_info(config: FitConfig, splits: dict[str, Any], dataset: str) -> dict[str, Any]:
    import sklearn

    return {
        "dataset": dataset,
        "seed": config.seed,
        "epochs": config.epochs,
        "learning_rate": config.lr,
        "batch_size": config.batch_size,
        "weight_decay": config.weight_decay,
        "optimizer": "adam",
        "n_train": len(splits["train"][1]),
        "n_val": len(splits["val"][1]),
        "n_test": len(splits["test"][1]),
        "torch": torch.__version__,
        "scikit_learn": sklearn.__version__,
    }


def train_digits(
    registry: ModelRegistry, version: str, *, progress: bool = True, overwrite: bool = False
) -> Manifest:
    """64 raw pixels -> Standardize(0, 1/16) -> Linear(64, 32) -> Square -> Linear(32, 10)."""
    config = DIGITS_CONFIG
    splits = digits_splits(config.seed)
    torch.manual_seed(config.seed)
    model = nn.Sequential(
        Standardize(torch.zeros(64), torch.full((64,), 1 / 16)),
        nn.Linear(64, 32),
        Square(),
        nn.Linear(32, 10),
    )
    with Timer() as timer:
        history = fit(model, splits, config, target="multiclass", progress=progress,
                      desc="digits-mlp")  # fmt: skip
    test_loss, test_acc = evaluate(model, *splits["test"], "multiclass")
    manifest = {
        "name": "digits-mlp",
        "version": version,
        "task": "classification",
        "description": "8x8 handwritten digits (raw 0-16 pixels); square activation for CKKS.",
        "architecture": "sequential",
        "architecture_config": sequential_config(model),
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
        "labels": [str(d) for d in range(10)],
        "he_compatible": True,
        "metrics": {
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "val_accuracy": history.val_accuracy[-1],
            "train_accuracy": history.train_accuracy[-1],
        },
        "training": {
            **_training_info(config, splits, "sklearn.datasets.load_digits"),
            "seconds": timer.seconds,
        },
    }
    return register_trained(registry, manifest, model.state_dict(), history,
                            he_calibration=splits["train"][0][:CALIBRATION_ROWS],
                            overwrite=overwrite)  # fmt: skip


def train_breast_cancer(
    registry: ModelRegistry, version: str, *, progress: bool = True, overwrite: bool = False
) -> Manifest:
    """30 raw features -> Standardize(train mean, 1/train std) -> Linear(30, 1) -> logit."""
    config = CANCER_CONFIG
    splits = cancer_splits(config.seed)
    x_train = splits["train"][0].astype(np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std < 1e-12] = 1.0  # a constant feature keeps scale 1 instead of dividing by zero
    torch.manual_seed(config.seed)
    model = nn.Sequential(
        Standardize(torch.from_numpy(mean).float(), torch.from_numpy(1.0 / std).float()),
        nn.Linear(30, 1),
    )
    with Timer() as timer:
        history = fit(model, splits, config, target="binary", progress=progress,
                      desc="breast-cancer-lr")  # fmt: skip
    test_loss, test_acc = evaluate(model, *splits["test"], "binary")
    from sklearn.metrics import roc_auc_score

    with torch.inference_mode():
        scores = model(torch.from_numpy(splits["test"][0])).reshape(-1).numpy()
    manifest = {
        "name": "breast-cancer-lr",
        "version": version,
        "task": "binary-classification",
        "description": "Wisconsin breast cancer (30 raw features); logistic regression.",
        "architecture": "sequential",
        "architecture_config": sequential_config(model),
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}],
        "outputs": [
            {"name": "logit", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "probability", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
        "labels": ["malignant", "benign"],
        "he_compatible": True,
        "metrics": {
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "test_roc_auc": float(roc_auc_score(splits["test"][1], scores)),
            "val_accuracy": history.val_accuracy[-1],
            "train_accuracy": history.train_accuracy[-1],
        },
        "training": {
            **_training_info(config, splits, "sklearn.datasets.load_breast_cancer"),
            "seconds": timer.seconds,
        },
    }
    return register_trained(registry, manifest, model.state_dict(), history,
                            he_calibration=splits["train"][0][:CALIBRATION_ROWS],
                            overwrite=overwrite)  # fmt: skip
