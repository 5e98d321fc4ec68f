"""Plan compiler: depth, parameters, rotation steps, packing, refusals with reasons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from secure_aiaas import stages as st
from secure_aiaas.errors import InputError
from secure_aiaas.he import CompiledModel, HEPlan, compile_model
from secure_aiaas.inference import export_stages
from secure_aiaas.inference.layers import Polynomial, Square, Standardize
from tests.he.conftest import Trained


def _compile(model: nn.Module, name: str, **options: object) -> CompiledModel:
    """The registry's path: export the torch layers as numpy stages, then compile those."""
    return compile_model(export_stages(model), name, **options)  # type: ignore[arg-type]


def test_digits_plan(digits: Trained) -> None:
    plan = _compile(digits.model, "digits-mlp", calibration=digits.x_train).plan
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
    plan = _compile(breast_cancer.model, "bc", calibration=breast_cancer.x_train).plan
    assert (plan.depth, plan.output, plan.params["poly_modulus_degree"]) == (1, "logit", 4096)
    assert sum(plan.params["coeff_mod_bit_sizes"]) <= 109
    assert plan.galois_steps == [1, 2, 4, 8, 16]


def test_plan_json_round_trip_has_no_weights(digits: Trained) -> None:
    compiled = _compile(digits.model, "digits-mlp", calibration=digits.x_train)
    text = compiled.plan.to_json()
    assert HEPlan.from_json(text) == compiled.plan
    weight = float(compiled.stages[0].weight[0, 0])
    assert repr(weight) not in text and len(text) < 2000


def test_plan_from_json_refuses_weak_parameters(digits: Trained) -> None:
    plan = _compile(digits.model, "digits-mlp", calibration=digits.x_train).plan
    text = plan.to_json().replace('"coeff_mod_bit_sizes": [', '"coeff_mod_bit_sizes": [60, ')
    with pytest.raises(InputError):
        HEPlan.from_json(text)


def test_trailing_sigmoid_is_stripped_to_a_logit(breast_cancer: Trained) -> None:
    model = nn.Sequential(*breast_cancer.model, nn.Sigmoid())
    assert _compile(model, "bc", calibration=breast_cancer.x_train).plan.output == "logit"


def test_polynomial_activation_folds_into_one_level() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), Polynomial([0.5, 0.25, 0.125]), nn.Linear(4, 2))
    compiled = _compile(model, "poly", input_bound=1.0)
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
    plan = _compile(model, "cnn", input_shape=(1, 6, 6), input_bound=1.0).plan
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
        _compile(nn.Sequential(*layers), "bad", input_bound=1.0)


def test_non_sequential_is_refused() -> None:
    with pytest.raises(InputError, match="Sequential"):
        export_stages(nn.Linear(4, 2))


def test_deep_model_falls_back_to_batched_only() -> None:
    model = nn.Sequential(
        Standardize(torch.zeros(4), torch.ones(4)),
        nn.Linear(4, 4),
        Square(),
        nn.Linear(4, 4),
        Square(),
        nn.Linear(4, 2),
    )
    plan = _compile(model, "deep", input_bound=1.0).plan
    assert plan.single is None and "batched" in (plan.single_unavailable_reason or "")


# ------------------------------------------------------------------ numpy stages, no torch
def _linear(rng: np.random.Generator, n_in: int, n_out: int) -> st.Linear:
    return st.Linear(rng.normal(0, 0.3, (n_out, n_in)).astype(np.float32),
                     rng.normal(0, 0.1, n_out).astype(np.float32))  # fmt: skip


def test_stages_built_by_hand_compile_and_fold_exactly() -> None:
    rng = np.random.default_rng(5)
    stages = (st.Standardize(np.full(6, 0.5), np.full(6, 2.0)), _linear(rng, 6, 4),
              st.Polynomial((0.5, 0.25, 0.125)), _linear(rng, 4, 3))  # fmt: skip
    compiled = compile_model(stages, "hand", input_bound=1.0)
    assert (compiled.plan.input_dim, compiled.plan.output_dim, compiled.plan.depth) == (6, 3, 3)
    x = rng.uniform(-1, 1, (7, 6))
    h = ((x - 0.5) * 2.0) @ stages[1].weight.T + stages[1].bias
    ref = (0.5 + 0.25 * h + 0.125 * h * h) @ stages[3].weight.T + stages[3].bias
    out = x
    for stage in compiled.stages:
        out = out @ stage.weight.T + stage.bias
        if stage.act_shift is not None:
            out = out * (out + stage.act_shift)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("stages", "reason"),
    [
        ((st.Linear(np.eye(4)), st.Polynomial((0.5, 0.2, 0.0, -0.004))), "degree 3"),
        ((st.Linear(np.eye(4)), st.Sigmoid(), st.Linear(np.eye(4))), "Sigmoid cannot be"),
        ((st.Linear(np.eye(4)), st.Linear(np.ones((2, 3)))), "Linear expects 3 features"),
        ((st.Square(),), "input shape"),
        (
            (st.Linear(np.eye(4)), st.Conv(np.ones((1, 1, 3)), None, (1,), ((0, 0),), (1,))),
            "Conv expects 1 channels",
        ),
    ],
)
def test_compiler_refuses_unfit_stages_with_reason(stages: st.Stages, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        compile_model(stages, "bad", input_bound=1.0)


def test_trailing_sigmoid_stage_makes_a_logit_plan() -> None:
    plan = compile_model((st.Linear(np.ones((1, 3))), st.Sigmoid()), "p", input_bound=1.0).plan
    assert (plan.output, plan.output_dim, plan.layers) == ("logit", 1, ["Linear->1"])


@pytest.mark.parametrize(
    "calibration",
    [
        np.zeros((3, 5)),
        np.zeros((0, 4)),
        np.full((2, 4), np.nan),
        np.array(["a"] * 8).reshape(2, 4),
        np.zeros(()),
    ],
    ids=["wrong-width", "no-rows", "nan", "strings", "scalar"],
)
def test_calibration_that_does_not_fit_is_refused(calibration: np.ndarray) -> None:
    with pytest.raises(InputError, match="calibration: expected finite rows of 4"):
        compile_model((st.Linear(np.eye(4)),), "m", calibration=calibration)


def test_overflowing_activation_is_refused_not_crashed() -> None:
    stages = (st.Linear(np.full((2, 4), 1e200)), st.Square(), st.Linear(np.ones((1, 2))))
    with pytest.raises(InputError, match="overflow"):
        compile_model(stages, "m", input_bound=1e100)


def test_too_wide_a_layer_is_refused_before_probing() -> None:
    with pytest.raises(InputError, match="at most 4096"):
        compile_model((st.Linear(np.ones((2, 5000), np.float32)),), "wide", input_bound=1.0)
    conv = st.Conv(np.ones((64, 1, 1, 1), np.float32), None, (1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(InputError, match="Conv output has 65536 values"):
        compile_model((conv,), "expands", input_shape=(1, 32, 32), input_bound=1.0)
