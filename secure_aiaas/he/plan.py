"""Plan compiler: a registered torch `Sequential` -> a CKKS evaluation plan.

The model is reduced to alternating dense affine stages and degree-2 activations:
every linear op (Standardize, Linear, Conv2d via its unrolled im2col matrix, average pooling,
Flatten, eval-mode BatchNorm) is turned into a matrix and consecutive ones are multiplied
together. A polynomial ``c0 + c1 x + c2 x^2`` is evaluated as ``x (x + c1/c2)`` with ``c2`` and
``c0`` folded into the next stage, so each activation costs one level.

The public `HEPlan` says what a client needs to build a matching context (parameters, the exact
rotation steps, the packing); the weights stay in `CompiledModel`, server-side.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from secure_aiaas.crypto.he_params import CKKSParams, choose_params, validate_params
from secure_aiaas.errors import InputError

if TYPE_CHECKING:
    from torch import nn

# torch is imported lazily: evaluation workers load plans and weights but never torch.
PLAN_VERSION = 1


@dataclass(frozen=True)
class SinglePacking:
    """One sample per ciphertext, input replicated so each layer is a multiply + rotate-and-sum.

    The client puts feature ``i`` at every slot ``s`` with ``(s % input_period) // input_repeat
    == i`` (zero for padded features) and reads output ``k`` at slot ``output_slots[k]``.
    """

    input_period: int
    input_repeat: int
    output_slots: list[int]
    galois_steps: list[int]


@dataclass(frozen=True)
class BatchedPacking:
    """Feature-major: ciphertext ``j`` holds feature ``j`` of up to ``samples_per_ciphertext``."""

    samples_per_ciphertext: int
    input_ciphertexts: int
    output_ciphertexts: int


@dataclass(frozen=True)
class HEPlan:
    """What a client needs to talk to one model under encryption (JSON, no weights)."""

    model: str
    input_dim: int
    output_dim: int
    output: str  # "logits" (argmax on the client) or "logit" (client applies the sigmoid)
    depth: int
    params: dict[str, Any]
    single: SinglePacking | None
    batched: BatchedPacking
    layers: list[str]
    fingerprint: str
    single_unavailable_reason: str | None = None
    version: int = PLAN_VERSION

    @property
    def ckks(self) -> CKKSParams:
        return CKKSParams.from_dict(self.params)

    @property
    def galois_steps(self) -> list[int]:
        return list(self.single.galois_steps) if self.single else []

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> HEPlan:
        try:
            data = json.loads(text)
            single = SinglePacking(**data.pop("single")) if data.get("single") else None
            data.pop("single", None)
            batched = BatchedPacking(**data.pop("batched"))
            plan = cls(single=single, batched=batched, **data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError("malformed HE plan") from exc
        if plan.version != PLAN_VERSION:
            raise InputError("unsupported HE plan version")
        validate_params(plan.ckks)  # the 128-bit table, also for plans read back
        return plan


@dataclass
class Stage:
    """y = W x + b, then (if `act_shift` is set) y <- y * (y + act_shift)."""

    weight: np.ndarray
    bias: np.ndarray
    act_shift: float | None = None


@dataclass
class CompiledModel:
    """Server-side: the public plan plus the folded weights (picklable for the workers)."""

    plan: HEPlan
    stages: list[Stage] = field(default_factory=list)


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _linear_types() -> tuple[type, ...]:
    from torch import nn

    from secure_aiaas.inference.layers import Standardize

    return (
        Standardize,
        nn.Linear,
        nn.Conv1d,
        nn.Conv2d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.Flatten,
        nn.Identity,
        nn.Dropout,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
    )


def _dense(
    module: nn.Module, in_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Matrix and offset of an affine module, found by probing it with the identity basis.

    For Conv2d this is the im2col product written out as one dense matrix.
    """
    import torch

    dim = int(np.prod(in_shape))
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, dim), torch.eye(dim)]).reshape(dim + 1, *in_shape)
        out = module(basis.double() if _is_double(module) else basis.float()).double()
    out_shape = tuple(out.shape[1:])
    flat = out.reshape(dim + 1, -1).numpy()
    offset = flat[0]
    return (flat[1:] - offset).T.copy(), offset.copy(), out_shape


def _is_double(module: nn.Module) -> bool:
    import torch

    params = list(module.parameters()) + list(module.buffers())
    return bool(params) and params[0].dtype == torch.float64


def _poly_coeffs(module: nn.Module) -> list[float] | None:
    from secure_aiaas.inference.layers import Polynomial, Square

    if isinstance(module, Square):
        return [0.0, 0.0, 1.0]
    if isinstance(module, Polynomial):
        coeffs = [float(c) for c in module.coeffs]  # type: ignore[union-attr]
        while len(coeffs) > 1 and coeffs[-1] == 0.0:
            coeffs.pop()
        return coeffs
    return None


def _input_shape(model: nn.Sequential, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    from torch import nn

    from secure_aiaas.inference.layers import Standardize

    if input_shape is not None:
        return input_shape
    for module in model:
        if isinstance(module, Standardize):
            return (int(module.mean.numel()),)  # type: ignore[operator]
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if not isinstance(module, (nn.Flatten, nn.Identity, nn.Dropout)):
            break
    raise InputError("cannot infer the input shape; pass input_shape")


def _reduce(model: nn.Module, in_shape: tuple[int, ...]) -> tuple[list[Stage], bool, list[str]]:
    """Fold the model into affine stages separated by x(x+a) activations."""
    from torch import nn

    if not isinstance(model, nn.Sequential):
        raise InputError("only torch.nn.Sequential models can be evaluated under encryption")
    modules = list(model)
    sigmoid = bool(modules) and isinstance(modules[-1], nn.Sigmoid)
    if sigmoid:
        modules = modules[:-1]  # the client applies the sigmoid to the decrypted logit
    dim = int(np.prod(in_shape))
    shape = in_shape
    weight, bias = np.eye(dim), np.zeros(dim)
    stages: list[Stage] = []
    summary: list[str] = []
    for module in modules:
        module.eval()
        name = type(module).__name__
        coeffs = _poly_coeffs(module)
        if isinstance(module, _linear_types()):
            mat, off, shape = _dense(module, shape)
            weight, bias = mat @ weight, mat @ bias + off
            summary.append(f"{name}->{int(np.prod(shape))}")
        elif coeffs is not None:
            if len(coeffs) > 3:
                raise InputError(
                    f"polynomial activation of degree {len(coeffs) - 1} is not supported "
                    "(at most degree 2: one multiplication per activation)"
                )
            coeffs = coeffs + [0.0] * (3 - len(coeffs))
            c0, c1, c2 = coeffs
            if c2 == 0.0:  # affine: fold it into the running stage
                weight, bias = c1 * weight, c1 * bias + c0
            else:
                stages.append(Stage(weight, bias, act_shift=c1 / c2))
                # c2 * y + c0 folds into the next affine map (applied from the right).
                dim_now = weight.shape[0]
                weight, bias = c2 * np.eye(dim_now), np.full(dim_now, c0)
            summary.append(f"{name}(deg {len(coeffs) - 1})")
        else:
            raise InputError(
                f"layer {name} cannot be evaluated under encryption: use Linear/Conv2d/"
                "AvgPool/Flatten with Square or a degree-2 Polynomial activation"
            )
    stages.append(Stage(weight, bias))
    return stages, sigmoid, summary


def _bounds(stages: list[Stage], calibration: np.ndarray) -> tuple[float, float]:
    """Largest magnitude of the input and of any slot value (incl. partial sums)."""
    x = calibration.reshape(len(calibration), -1).astype(np.float64)
    in_max = float(np.abs(x).max()) if x.size else 1.0
    peak = 1.0
    for stage in stages:
        partial = np.abs(x) @ np.abs(stage.weight).T + np.abs(stage.bias)
        peak = max(peak, float(partial.max()))
        x = x @ stage.weight.T + stage.bias
        if stage.act_shift is not None:
            peak = max(peak, float(np.abs(x + stage.act_shift).max()))
            x = x * (x + stage.act_shift)
            peak = max(peak, float(np.abs(x).max()))
    return in_max, peak


def _single_packing(
    stages: list[Stage], slots: int, max_keys: int
) -> tuple[SinglePacking | None, str | None]:
    n = stages[0].weight.shape[1]
    m = stages[0].weight.shape[0]
    n_p, m_p = _pow2(n), _pow2(m)
    if len(stages) > 2:
        return None, "single-sample packing supports at most two linear stages; use batched"
    if n_p * m_p > slots:
        return None, f"first layer {n}x{m} does not fit {slots} slots replicated"
    steps = [m_p << t for t in range(int(math.log2(n_p)))]
    if len(stages) == 1:
        return SinglePacking(n_p * m_p, m_p, list(range(m)), steps[:max_keys]), None
    p = stages[1].weight.shape[0]
    if p * m_p > slots:
        return None, f"second layer {m}x{p} does not fit {slots} slots"
    steps += [1 << t for t in range(int(math.log2(m_p)))]
    # Each Galois key is ~1 MB: past `max_keys`, the largest power-of-two steps are composed
    # from the kept ones (1024 = 512 + 512) at the cost of one extra rotation each.
    keyed = sorted(set(steps))[:max_keys]
    return SinglePacking(n_p * m_p, m_p, [k * m_p for k in range(p)], keyed), None


def compile_model(
    model: nn.Module,
    name: str,
    *,
    calibration: np.ndarray | None = None,
    input_bound: float = 16.0,
    input_shape: tuple[int, ...] | None = None,
    max_galois_keys: int = 10,
) -> CompiledModel:
    """Compile `model` into a CKKS plan; raise `InputError` with the reason if it cannot be.

    `max_galois_keys` bounds the tenant's key upload (about 1 MB per key at N=8192).

    `calibration` (a few representative raw inputs) sizes the headroom above the scale; without
    it every input feature is assumed to lie in ``[-input_bound, input_bound]``.
    """
    in_shape = _input_shape(model, input_shape)  # type: ignore[arg-type]
    stages, sigmoid, summary = _reduce(model, in_shape)
    if calibration is None:
        dim = stages[0].weight.shape[1]
        corners = np.array([np.full(dim, input_bound), np.full(dim, -input_bound)])
        calibration = corners
    in_max, peak = _bounds(stages, np.asarray(calibration))
    # Two stages of safety above what calibration saw: unseen inputs may go beyond it.
    headroom = max(4, math.ceil(math.log2(peak)) + 3)
    # One level per affine stage (plaintext multiply) and one per activation (squaring).
    depth = len(stages) + sum(1 for s in stages if s.act_shift is not None)
    params = choose_params(depth, headroom)
    data_bits = params.total_bits - params.coeff_mod_bit_sizes[-1]
    if math.log2(max(in_max, 1.0)) + params.scale_bits + 2 > data_bits:
        raise InputError("input values too large for the modulus chain")
    single, reason = _single_packing(stages, params.slots, max_galois_keys)
    out_dim = stages[-1].weight.shape[0]
    digest = hashlib.sha256()
    for stage in stages:
        digest.update(
            stage.weight.tobytes() + stage.bias.tobytes() + repr(stage.act_shift).encode()
        )
    digest.update(json.dumps(params.to_dict(), sort_keys=True).encode())
    plan = HEPlan(
        model=name,
        input_dim=stages[0].weight.shape[1],
        output_dim=out_dim,
        output="logit" if (sigmoid or out_dim == 1) else "logits",
        depth=depth,
        params=params.to_dict(),
        single=single,
        batched=BatchedPacking(params.slots, stages[0].weight.shape[1], out_dim),
        layers=summary,
        fingerprint=digest.hexdigest()[:32],
        single_unavailable_reason=reason,
    )
    return CompiledModel(plan, stages)
