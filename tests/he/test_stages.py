"""Exported numpy stages compute what the torch layers compute; the export refuses what HE can't.

Each layer is exported (`inference.export_stages`) and turned into its dense matrix by the HE
compiler (`he.affine.dense`, numpy only); the matrix applied to random inputs must match the
torch layer's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from secure_aiaas import stages as st
from secure_aiaas.errors import InputError
from secure_aiaas.he.affine import dense
from secure_aiaas.inference import export_stages
from secure_aiaas.inference.layers import Polynomial, Square, Standardize


def _batch_norm(kind: type[nn.Module], channels: int, affine: bool = True) -> nn.Module:
    torch.manual_seed(3)
    module = kind(channels, affine=affine)
    with torch.no_grad():
        module.running_mean.uniform_(-1, 1)  # type: ignore[operator]
        module.running_var.uniform_(0.5, 2)  # type: ignore[operator]
        if affine:
            module.weight.uniform_(0.5, 1.5)  # type: ignore[operator]
            module.bias.uniform_(-0.5, 0.5)  # type: ignore[operator]
    return module.eval()


LAYERS = [
    ("standardize", lambda: Standardize(torch.randn(5), torch.rand(5) + 0.5), (5,)),
    ("linear", lambda: nn.Linear(6, 3), (6,)),
    ("linear-no-bias", lambda: nn.Linear(6, 3, bias=False), (6,)),
    ("conv1d", lambda: nn.Conv1d(2, 3, 3), (2, 7)),
    ("conv1d-strided", lambda: nn.Conv1d(2, 4, 2, stride=2, padding=1, dilation=2), (2, 9)),
    ("conv1d-same", lambda: nn.Conv1d(1, 2, 4, padding="same"), (1, 8)),
    ("conv2d", lambda: nn.Conv2d(1, 2, 3), (1, 6, 6)),
    ("conv2d-groups", lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), groups=2),
     (4, 5, 4)),
    ("conv2d-dilated-same", lambda: nn.Conv2d(2, 2, 3, dilation=2, padding="same", bias=False),
     (2, 6, 5)),
    ("conv2d-valid", lambda: nn.Conv2d(1, 1, 2, padding="valid"), (1, 4, 4)),
    ("avgpool1d", lambda: nn.AvgPool1d(3, stride=2, padding=1), (2, 7)),
    ("avgpool1d-ceil-no-pad", lambda: nn.AvgPool1d(3, 2, 1, ceil_mode=True,
                                                   count_include_pad=False), (2, 8)),
    ("avgpool2d", lambda: nn.AvgPool2d(2), (2, 4, 4)),
    ("avgpool2d-odd", lambda: nn.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 1)), (1, 5, 5)),
    ("avgpool2d-ceil", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     (1, 6, 6)),
    ("avgpool2d-divisor", lambda: nn.AvgPool2d(2, divisor_override=3), (1, 4, 4)),
    ("batchnorm1d", lambda: _batch_norm(nn.BatchNorm1d, 4), (4,)),
    ("batchnorm1d-seq", lambda: _batch_norm(nn.BatchNorm1d, 3), (3, 5)),
    ("batchnorm2d-no-affine", lambda: _batch_norm(nn.BatchNorm2d, 2, affine=False), (2, 3, 3)),
    ("flatten", lambda: nn.Flatten(), (2, 3, 2)),
    ("flatten-partial", lambda: nn.Flatten(2, 3), (2, 3, 2)),
]  # fmt: skip


@pytest.mark.parametrize(("make", "shape"), [(m, s) for _, m, s in LAYERS],
                         ids=[n for n, _, _ in LAYERS])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# torch's own note on even kernels with padding="same" (the reference run, not the export)
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
def test_numpy_stage_matches_the_torch_layer(make, shape, dtype) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    layer = make().to(dtype).eval()
    (stage,) = export_stages(nn.Sequential(layer))
    matrix, offset, out_shape = dense(stage, shape)  # type: ignore[arg-type]
    x = np.random.default_rng(1).uniform(-2, 2, (9, *shape))
    with torch.no_grad():
        ref = layer(torch.from_numpy(x).to(dtype)).double().numpy()
    assert out_shape == ref.shape[1:]
    got = x.reshape(9, -1) @ matrix.T + offset
    # Stages without parameters compute in float32 whatever the model's dtype, as torch probing did.
    has_arrays = any(isinstance(v, np.ndarray) for v in vars(stage).values())
    tol = 1e-12 if dtype == torch.float64 and has_arrays else 1e-5
    np.testing.assert_allclose(got, ref.reshape(9, -1), rtol=tol, atol=tol)
    assert matrix.shape == (math.prod(out_shape), math.prod(shape))


def test_export_translates_layers_in_order_and_drops_eval_no_ops() -> None:
    model = nn.Sequential(Standardize(torch.zeros(4), torch.ones(4)), nn.Dropout(0.5),
                          nn.Linear(4, 3), Square(), nn.Identity(), nn.Linear(3, 2),
                          Polynomial([0.1, 0.2, 0.3]), nn.Linear(2, 1), nn.Sigmoid())  # fmt: skip
    exported = export_stages(model)
    assert [type(s) for s in exported] == [st.Standardize, st.Linear, st.Square, st.Linear,
                                           st.Polynomial, st.Linear, st.Sigmoid]  # fmt: skip
    linear = exported[1]
    assert isinstance(linear, st.Linear) and linear.bias is not None
    assert linear.weight.dtype == np.float32  # the layer's own dtype, not widened
    np.testing.assert_array_equal(linear.weight, model[2].weight.detach().numpy())
    assert exported[4] == exported[4] and exported[4].coeffs == pytest.approx((0.1, 0.2, 0.3))


def test_exported_arrays_are_read_only_copies() -> None:
    layer = nn.Linear(3, 2)
    (stage,) = export_stages(nn.Sequential(layer))
    assert isinstance(stage, st.Linear)
    with pytest.raises(ValueError, match="read-only"):
        stage.weight[0, 0] = 1.0
    with torch.no_grad():
        layer.weight.zero_()  # training on afterwards does not change what was exported
    assert np.abs(stage.weight).sum() > 0


@pytest.mark.parametrize(
    ("layers", "reason"),
    [
        ([nn.Linear(4, 4), nn.ReLU()], "ReLU cannot be evaluated"),
        ([nn.Linear(4, 4), nn.GELU()], "GELU cannot be evaluated"),
        ([nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1)], "Sigmoid cannot be evaluated"),
        ([nn.Conv1d(1, 1, 2, padding=1, padding_mode="circular")], "padding_mode 'circular'"),
        ([nn.BatchNorm1d(4, track_running_stats=False)], "without running statistics"),
        ([nn.Sequential(nn.Linear(4, 4))], "Sequential cannot be evaluated"),
        ([nn.Flatten(0)], "batch dim"),
    ],
)
def test_export_refuses_layers_he_cannot_evaluate(layers: list[nn.Module], reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        export_stages(nn.Sequential(*layers))


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: st.Linear(np.ones((2, 3)), np.ones(3)), "bias length"),
        (lambda: st.Linear(np.ones(3)), "2 dimensions"),
        (lambda: st.Linear(np.ones((2, 3), dtype=np.int64)), "float32 or float64"),
        (lambda: st.Linear(np.array([[np.nan]])), "finite"),
        (lambda: st.Standardize(np.zeros(3), np.ones(4)), "differ in length"),
        (lambda: st.Conv(np.ones((2, 1, 3)), None, (1, 1), ((0, 0),), (1,)), "spatial dim"),
        (lambda: st.Conv(np.ones((3, 1, 3)), None, (1,), ((0, 0),), (1,), groups=2), "groups"),
        (lambda: st.AvgPool((2,), (0,), (0,)), ">= 1"),
        (lambda: st.AvgPool((2,), (2,), (2,)), "half the kernel"),
        (lambda: st.BatchNorm(np.zeros(2), -np.ones(2), None, None, 0.0), "positive"),
        (lambda: st.Polynomial(()), "at least one"),
    ],
)
def test_stages_validate_their_values(build, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=reason):
        build()
