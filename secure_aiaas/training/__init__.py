"""training: trains the built-in models (incl. the HE-friendly ones) into the registry.

``train(name, data_dir)`` for ``secure-aiaas models train NAME``;
``ensure_builtin_models(data_dir)`` for the first ``make serve``. HE-compatible models are
registered with their calibration inputs (``he-calibration.npy``, a hashed asset) for the HE
compiler; ``ensure`` adds them to versions trained before they were stored. Torch, scikit-learn and
matplotlib load only when a model is actually trained.
"""

from __future__ import annotations

from secure_aiaas.training.builtin import (
    BUILTIN_MODELS,
    SMALL_MODELS,
    calibration_inputs,
    ensure_builtin_models,
    store_missing_calibration,
    train,
)

__all__ = [
    "BUILTIN_MODELS",
    "SMALL_MODELS",
    "calibration_inputs",
    "ensure_builtin_models",
    "store_missing_calibration",
    "train",
]
