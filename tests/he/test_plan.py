"""Plan compiler: depth, parameters, rotation steps, packing, refusals with reasons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from secure_aiaas.errors import InputError
from secure_aiaas.he import HEPlan, compile_model
from secure_aiaas.inference.layers import Polynomial, Square, Standardize
from tests.he.conftest import Trained


def test_digits_plan(digits: Trained) -> None:
    plan = compile_model(digits.model, "digits-mlp", calibration=digits.x_train).plan
    assert (plan.input_dim, plan.output_dim, plan.output, plan.depth) == (64, 10, "logits", 3)
    assert plan.params["poly_modulus_degree"] == 8192
    assert sum(plan.params["coeff_mod_bit_sizes"]) <= 218
    assert plan.single is not None
    assert plan.single.input_period == 2048 and plan.single.input_repeat == 32
    assert plan.single.output_slots == [32 * k for k in range(10)]
    # 6 strides of 32 plus 5 unit strides, capped at 10 keys: 1024 is composed as 512 + 512.
    assert plan.single.galois_steps == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert plan.batched.input_ciphertexts == 64 and plan.batched.samples_per_ciphertext == 4096


def test_lr_plan_uses_smallest_ring(breast_cancer: Trained) -> None:
    plan = compile_model(breast_cancer.model, "bc", calibration=breast_cancer.x_train).plan
    assert (plan.depth, plan.output, plan.params["poly_modulus_degree"]) == (1, "logit", 4096)
    assert sum(plan.params["coeff_mod_bit_sizes"]) <= 109
    assert plan.galois_steps == [1, 2, 4, 8, 16]


def test_plan_json_round_trip_has_no_weights(digits: Trained) -> None:
    compiled = compile_model(digits.model, "digits-mlp", calibration=digits.x_train)
    text = compiled.plan.to_json()
    assert HEPlan.from_json(text) == compiled.plan
    weight = float(compiled.stages[0].weight[0, 0])
    assert repr(weight) not in text and len(text) < 2000


def test_plan_from_json_refuses_weak_parameters(digits: Trained) -> None:
    plan = compile_model(digits.model, "digits-mlp", calibration=digits.x_train).plan
    text = plan.to_json().replace('"coeff_mod_bit_sizes": [', '"coeff_mod_bit_sizes": [60, ')
    with pytest.raises(InputError):
        HEPlan.from_json(text)


def test_trailing_sigmoid_is_stripped_to_a_logit(breast_cancer: Trained) -> None:
    model = nn.Sequential(*breast_cancer.model, nn.Sigmoid())
    assert compile_model(model, "bc", calibration=breast_cancer.x_train).plan.output == "logit"


def test_polynomial_activation_folds_into_one_level() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), Polynomial([0.5, 0.25, 0.125]), nn.Linear(4, 2))
    compiled = compile_model(model, "poly", input_bound=1.0)
    assert compiled.plan.depth == 3
    x = np.random.default_rng(0).uniform(-1, 1, (5, 8))
    out = x
    for stage in compiled.stages:  # the folded stages compute exactly the model
        out = out @ stage.weight.T + stage.bias
        if stage.act_shift is not None:
            out = out * (out + stage.act_shift)
    with torch.no_grad():
        ref = model(torch.tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_conv_and_pooling_become_one_stage() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Flatten(), Square(), nn.Linear(8, 3)
    )
    plan = compile_model(model, "cnn", input_shape=(1, 6, 6), input_bound=1.0).plan
    assert plan.input_dim == 36 and plan.depth == 3 and plan.single is not None


@pytest.mark.parametrize(
    ("layers", "reason"),
    [
        ([nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)], "ReLU cannot be evaluated"),
        ([nn.Linear(4, 4), nn.Tanh()], "Tanh cannot be evaluated"),
        ([nn.Linear(4, 4), Polynomial([0.5, 0.2, 0.0, -0.004])], "degree 3"),
        ([nn.Linear(4, 4), nn.MaxPool1d(2)], "MaxPool1d cannot be evaluated"),
        ([nn.Linear(4, 4)] + [Square(), nn.Linear(4, 4)] * 8, "depth"),
    ],
)
def test_unsupported_models_are_refused_with_reason(layers: list[nn.Module], reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        compile_model(nn.Sequential(*layers), "bad", input_bound=1.0)


def test_non_sequential_is_refused() -> None:
    with pytest.raises(InputError, match="Sequential"):
        compile_model(nn.Linear(4, 2), "bad", input_shape=(4,))


def test_deep_model_falls_back_to_batched_only() -> None:
    model = nn.Sequential(
        Standardize(torch.zeros(4), torch.ones(4)),
        nn.Linear(4, 4),
        Square(),
        nn.Linear(4, 4),
        Square(),
        nn.Linear(4, 2),
    )
    plan = compile_model(model, "deep", input_bound=1.0).plan
    assert plan.single is None and "batched" in (plan.single_unavailable_reason or "")
