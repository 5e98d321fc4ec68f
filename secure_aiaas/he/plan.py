"""Plan compiler: numpy network stages (`secure_aiaas.stages`) -> a CKKS evaluation plan.

`inference.export_stages` turns a registered torch model into stages; this module never sees
torch. The network is reduced to alternating dense affine stages and degree-2 activations:
every linear stage (Standardize, Linear, Conv via its unrolled im2col matrix, average pooling,
Flatten, eval-mode BatchNorm) is turned into a matrix (`he.affine`) and consecutive ones are
multiplied together. A polynomial ``c0 + c1 x + c2 x^2`` is evaluated as ``x (x + c1/c2)`` with
``c2`` and ``c0`` folded into the next stage, so each activation costs one level.

The public `HEPlan` says what a client needs to build a matching context (parameters, the exact
rotation steps, the packing); the weights stay in `CompiledModel`, server-side.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from secure_aiaas import stages as st
from secure_aiaas.crypto.he_params import CKKSParams, choose_params, validate_params
from secure_aiaas.errors import InputError
from secure_aiaas.he.affine import AFFINE_TYPES, MAX_WIDTH, dense, label
from secure_aiaas.stages import Array

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
class FoldedStage:
    """y = W x + b, then (if `act_shift` is set) y <- y * (y + act_shift)."""

    weight: Array
    bias: Array
    act_shift: float | None = None


@dataclass
class CompiledModel:
    """Server-side: the public plan plus the folded weights (picklable for the workers)."""

    plan: HEPlan
    stages: list[FoldedStage] = field(default_factory=list)


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _poly_coeffs(stage: st.Stage) -> list[float] | None:
    if isinstance(stage, st.Square):
        return [0.0, 0.0, 1.0]
    if isinstance(stage, st.Polynomial):
        coeffs = list(stage.coeffs)
        while len(coeffs) > 1 and coeffs[-1] == 0.0:
            coeffs.pop()
        return coeffs
    return None


def _input_shape(
    stages: Sequence[st.Stage], input_shape: tuple[int, ...] | None
) -> tuple[int, ...]:
    if input_shape is not None:
        return input_shape
    for stage in stages:
        if isinstance(stage, st.Standardize):
            return (int(stage.mean.shape[0]),)
        if isinstance(stage, st.Linear):
            return (int(stage.weight.shape[1]),)
        if not isinstance(stage, st.Flatten):
            break
    raise InputError("cannot infer the input shape; pass input_shape")


def _reduce(
    stages: Sequence[st.Stage], in_shape: tuple[int, ...]
) -> tuple[list[FoldedStage], bool, list[str]]:
    """Fold the network into affine stages separated by x(x+a) activations."""
    layers = list(stages)
    sigmoid = bool(layers) and isinstance(layers[-1], st.Sigmoid)
    if sigmoid:
        layers = layers[:-1]  # the client applies the sigmoid to the decrypted logit
    dim = math.prod(in_shape)
    if dim > MAX_WIDTH:
        raise InputError(f"input has {dim} values; at most {MAX_WIDTH} under encryption")
    shape = in_shape
    weight, bias = np.eye(dim), np.zeros(dim)
    folded: list[FoldedStage] = []
    summary: list[str] = []
    for stage in layers:
        coeffs = _poly_coeffs(stage)
        if isinstance(stage, AFFINE_TYPES):
            name = label(stage, shape)
            mat, off, shape = dense(stage, shape)
            weight, bias = mat @ weight, _exact_matvec(mat, bias) + off
            summary.append(f"{name}->{math.prod(shape)}")
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
                folded.append(FoldedStage(weight, bias, act_shift=c1 / c2))
                # c2 * y + c0 folds into the next affine map (applied from the right).
                dim_now = weight.shape[0]
                weight, bias = c2 * np.eye(dim_now), np.full(dim_now, c0)
            summary.append(f"{type(stage).__name__}(deg {len(coeffs) - 1})")
        else:
            raise InputError(
                f"layer {type(stage).__name__} cannot be evaluated under encryption: use "
                "Linear/Conv2d/AvgPool/Flatten with Square or a degree-2 Polynomial activation"
            )
    folded.append(FoldedStage(weight, bias))
    return folded, sigmoid, summary


def _exact_matvec(mat: Array, vec: Array) -> Array:
    """``mat @ vec`` with each row's sum correctly rounded (`math.fsum`): the same bits on
    every CPU. BLAS sums in an order of its kernel's choosing (AVX-512 and AVX2 machines
    differ in the last bits), and the folded bias is part of the plan's fingerprint."""
    if not vec.any():
        return np.zeros(mat.shape[0])
    return np.array([math.fsum(row) for row in (mat * vec).tolist()], dtype=np.float64)


def _bounds(stages: list[FoldedStage], calibration: Array) -> tuple[float, float]:
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
    stages: list[FoldedStage], slots: int, max_keys: int
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
    stages: Sequence[st.Stage],
    name: str,
    *,
    calibration: Array | None = None,
    input_bound: float = 16.0,
    input_shape: tuple[int, ...] | None = None,
    max_galois_keys: int = 10,
) -> CompiledModel:
    """Compile a network (`inference.export_stages`) into a CKKS plan, or refuse with the reason.

    Args:
        stages: the network, in order; a trailing `Sigmoid` makes the output a logit.
        name: the model name the plan carries.
        calibration: a few representative raw inputs (the registry keeps them with the model);
            they size the headroom above the scale. Without them every input feature is
            assumed to lie in ``[-input_bound, input_bound]``.
        input_shape: one sample's shape; inferred from a leading Standardize or Linear.
        max_galois_keys: bounds the tenant's key upload (about 1 MB per key at N=8192).

    Raises:
        InputError: a stage a CKKS circuit cannot evaluate, a polynomial of degree > 2, a depth
            no 128-bit parameter set holds, or inputs too large for the modulus chain.
    """
    in_shape = _input_shape(stages, input_shape)
    folded, sigmoid, summary = _reduce(stages, in_shape)
    dim = folded[0].weight.shape[1]
    if calibration is None:
        calibration = np.array([np.full(dim, input_bound), np.full(dim, -input_bound)])
    calibration = np.asarray(calibration)
    rows = len(calibration) if calibration.ndim else 0
    if (
        rows == 0
        or calibration.size != rows * dim
        or not np.issubdtype(calibration.dtype, np.number)
        or not np.isfinite(calibration).all()
    ):
        raise InputError(f"calibration: expected finite rows of {dim} input values each")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
        in_max, peak = _bounds(folded, calibration)
    if not math.isfinite(peak):
        raise InputError("values overflow under the model's weights; no plan can hold them")
    # Two stages of safety above what calibration saw: unseen inputs may go beyond it.
    headroom = max(4, math.ceil(math.log2(peak)) + 3)
    # One level per affine stage (plaintext multiply) and one per activation (squaring).
    depth = len(folded) + sum(1 for s in folded if s.act_shift is not None)
    params = choose_params(depth, headroom)
    data_bits = params.total_bits - params.coeff_mod_bit_sizes[-1]
    if math.log2(max(in_max, 1.0)) + params.scale_bits + 2 > data_bits:
        raise InputError("input values too large for the modulus chain")
    single, reason = _single_packing(folded, params.slots, max_galois_keys)
    out_dim = folded[-1].weight.shape[0]
    digest = hashlib.sha256()
    for stage in folded:
        digest.update(
            stage.weight.tobytes() + stage.bias.tobytes() + repr(stage.act_shift).encode()
        )
    digest.update(json.dumps(params.to_dict(), sort_keys=True).encode())
    plan = HEPlan(
        model=name,
        input_dim=folded[0].weight.shape[1],
        output_dim=out_dim,
        output="logit" if (sigmoid or out_dim == 1) else "logits",
        depth=depth,
        params=params.to_dict(),
        single=single,
        batched=BatchedPacking(params.slots, folded[0].weight.shape[1], out_dim),
        layers=summary,
        fingerprint=digest.hexdigest()[:32],
        single_unavailable_reason=reason,
    )
    return CompiledModel(plan, folded)
