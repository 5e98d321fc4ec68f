"""The built-in models: train by name, and prepare the small ones on a first `make serve`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from secure_aiaas.errors import NotFoundError
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry

Trainer = Callable[..., Manifest]
BUILTIN_MODELS = ("digits-mlp", "breast-cancer-lr", "text-embed")
# What `make serve` prepares when absent: seconds on a CPU, no large copies.
SMALL_MODELS = ("digits-mlp", "breast-cancer-lr")


def _trainer(name: str) -> Trainer:
    # Imported on demand: torch, scikit-learn and matplotlib are only needed to train.
    if name == "digits-mlp":
        from secure_aiaas.training.tabular import train_digits

        return train_digits
    if name == "breast-cancer-lr":
        from secure_aiaas.training.tabular import train_breast_cancer

        return train_breast_cancer
    if name == "text-embed":
        from secure_aiaas.training.text_embed import package_text_embed

        return package_text_embed
    raise NotFoundError(f"no such built-in model; built-ins: {', '.join(BUILTIN_MODELS)}")


def train(
    name: str,
    data_dir: Path | str,
    *,
    version: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Manifest:
    """Train (or package) built-in `name` into ``<data_dir>/models/<name>/<version>``.

    Args:
        version: defaults to one more than the latest registered version ("1" at first).
        progress: show a tqdm progress bar on stderr.
        overwrite: replace `version` if it exists.
    """
    trainer = _trainer(name)
    registry = ModelRegistry(data_dir)
    return trainer(
        registry, version or registry.next_version(name), progress=progress, overwrite=overwrite
    )


def ensure_builtin_models(
    data_dir: Path | str, names: Iterable[str] = SMALL_MODELS, *, progress: bool = True
) -> list[Manifest]:
    """Train each of `names` that has no registered version yet; returns those trained."""
    registry = ModelRegistry(data_dir)
    return [
        train(name, data_dir, progress=progress) for name in names if not registry.versions(name)
    ]


def calibration_inputs(dataset: str | None, *, rows: int = 512) -> np.ndarray | None:
    """Raw training inputs of a built-in dataset, for sizing a model's HE plan.

    The HE compiler needs representative inputs to choose its scale headroom. For the built-in
    models they are the (public, shipped) training split, regenerated deterministically; other
    models get None and the compiler's conservative default bound.
    """
    from secure_aiaas.training.tabular import cancer_splits, digits_splits

    splits = {"sklearn.datasets.load_digits": digits_splits,
              "sklearn.datasets.load_breast_cancer": cancer_splits}.get(dataset or "")
    if splits is None:
        return None
    return splits()["train"][0][:rows]
