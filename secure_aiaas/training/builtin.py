"""The built-in models: train by name, and prepare the small ones on a first `make serve`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from secure_aiaas.errors import NotFoundError, ServiceError
from secure_aiaas.inference.calibration import HE_CALIBRATION_ASSET, encode_calibration
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
    """Train each of `names` that has no registered version yet; returns those trained.

    Versions trained before calibration inputs were stored with the model get them added
    (`store_missing_calibration`), so their HE plans stay what they were.
    """
    registry = ModelRegistry(data_dir)
    trained = [
        train(name, data_dir, progress=progress) for name in names if not registry.versions(name)
    ]
    store_missing_calibration(data_dir)
    return trained


def store_missing_calibration(data_dir: Path | str) -> list[str]:
    """Add ``he-calibration.npy`` to HE models trained on a built-in dataset that lack it.

    Before the trainers stored them, the server recomputed these rows from the packaged dataset
    at every start; they are the same rows (same dataset, seed and split), so the plans keep
    their fingerprints. Models of other origins are left as they are: the HE compiler then uses
    its default input bound. Returns the ids of the versions updated.
    """
    registry = ModelRegistry(data_dir)
    updated: list[str] = []
    for name in registry.names():
        for version in registry.versions(name):
            try:
                manifest = registry.show(name, version)
                if not manifest.he_compatible or HE_CALIBRATION_ASSET in manifest.assets:
                    continue
                seed = manifest.training.get("seed", 0)
                rows = calibration_inputs(
                    manifest.training.get("dataset"), seed=seed if isinstance(seed, int) else 0
                )
                if rows is None:
                    continue
                registry.attach_asset(name, version, HE_CALIBRATION_ASSET,
                                      encode_calibration(rows))  # fmt: skip
            except ServiceError:
                # An unreadable manifest, or rows that don't fit its inputs: left as it is; the
                # server refuses the model, or compiles it with the default input bound.
                continue
            updated.append(manifest.id)
    return updated


def calibration_inputs(
    dataset: str | None, *, rows: int | None = None, seed: int = 0
) -> np.ndarray | None:
    """Raw training inputs of a built-in dataset: what the trainers store for the HE compiler.

    The rows are the first `rows` (default: as many as the trainers store) of the training
    split, as the trainer splits it with `seed`; datasets other than the built-ins' give None.
    """
    from secure_aiaas.training.tabular import CALIBRATION_ROWS, cancer_splits, digits_splits

    splits = {
        "sklearn.datasets.load_digits": digits_splits,
        "sklearn.datasets.load_breast_cancer": cancer_splits,
    }.get(dataset or "")
    if splits is None:
        return None
    return splits(seed)["train"][0][: CALIBRATION_ROWS if rows is None else rows]
