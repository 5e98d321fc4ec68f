"""Plans compiled from numpy stages are the plans the torch-probing compiler made, bit for bit.

The expected values were recorded with the compiler of commit 76df17c (``compile_model(module,
...)`` probing the torch layers) on the seeded models of `tests.he.seeded`. The fingerprint
hashes the folded weights' bytes and the parameters, so equal fingerprints mean the workers
encode the same weights and return the same ciphertexts for the same inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest
from torch import nn

from secure_aiaas.he import compile_model
from secure_aiaas.inference import export_stages
from tests.he import seeded

# name -> (builder, input_shape, fingerprint, sha256 of plan JSON) with calibration, and
# (fingerprint, sha256) without it (the default input bound).
RECORDED: dict[str, tuple[Callable[[], tuple[nn.Sequential, np.ndarray]],
                          tuple[int, ...] | None, tuple[str, str], tuple[str, str]]] = {
    "digits-mlp": (
        seeded.digits_mlp, None,
        ("4dd8fd85756b18f588dc5fbb61e157f2",
         "deb983e2fbc4f6c28468e966bc19d4d36eb3ff86ae1d79ebed5f8a385c8cf7f8"),
        ("c32d7c897571bd915b58796d9ab974f0",
         "05074a167e968ec3b9ab4c75a2950448011d2f9f2bd47b710dbac7347d864f63"),
    ),
    "breast-cancer-lr": (
        seeded.breast_cancer_lr, None,
        ("5b5ae6ca392635007209782cdd3854cf",
         "eea2a2b3a1fcdbeeebc79944720a7709da435927da4bca75c4cc5b48cdc48b0e"),
        ("af74322cf7b65f0cb8bf23f5f5630a8e",
         "9d1eedcfd429f0fab3dd0e684f35d98e67f0f365c7ebf84d7c9bbb8efbc14885"),
    ),
    "cnn": (
        seeded.small_cnn, (1, 6, 6),
        ("475f42fb91bb9a74856a0c4844b028c4",
         "a70c13fced4925eb1b5e51fd0cedd53a76b7247e86963161ff10611ec8351898"),
        ("62b04ea93959b085058618ba8bd33e34",
         "676b95beea8c2e26324abeaee49f5f750a0e081ba8b6329bb93b51952d87335f"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECORDED))
@pytest.mark.parametrize("calibrated", [True, False], ids=["calibrated", "default-bound"])
def test_plan_is_the_one_recorded_before_the_change(name: str, calibrated: bool) -> None:
    build, input_shape, with_calibration, without = RECORDED[name]
    model, calibration = build()
    compiled = compile_model(export_stages(model), name, input_shape=input_shape,
                             calibration=calibration if calibrated else None)  # fmt: skip
    fingerprint, plan_sha = with_calibration if calibrated else without
    assert compiled.plan.fingerprint == fingerprint
    assert hashlib.sha256(compiled.plan.to_json().encode()).hexdigest() == plan_sha


def test_built_in_plan_summaries_are_unchanged() -> None:
    digits = compile_model(export_stages(seeded.digits_mlp()[0]), "digits-mlp").plan
    cancer = compile_model(export_stages(seeded.breast_cancer_lr()[0]), "lr").plan
    assert digits.layers == ["Standardize->64", "Linear->32", "Square(deg 2)", "Linear->10"]
    assert cancer.layers == ["Standardize->30", "Linear->1"]
