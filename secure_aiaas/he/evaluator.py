"""Evaluate a compiled plan on SEAL ciphertexts under a tenant's public context.

Runs inside pool workers (see `pool.py`): bytes in, bytes out. Untrusted bytes reach SEAL only
after `crypto.he_wire` has checked the framing and `validate_ciphertext` has checked what SEAL
loaded (level, size, scale). Loaded keys and encoded weights are cached per process, so a
request never re-reads megabytes of keys.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tenseal import sealapi as sa

from secure_aiaas.crypto.he_params import (
    CKKSParams,
    build_seal_context,
    context_params_match,
    galois_element,
    seal_load,
    seal_save,
)
from secure_aiaas.crypto.he_wire import PublicContextMessage, decode_vector, encode_vector
from secure_aiaas.errors import CiphertextError
from secure_aiaas.he.plan import CompiledModel, FoldedStage, HEPlan


@contextlib.contextmanager
def map_seal_errors(message: str) -> Iterator[None]:
    """Translate native SEAL/TenSEAL exceptions into a `CiphertextError` (no internals leak)."""
    try:
        yield
    except CiphertextError:
        raise
    except (ValueError, RuntimeError, TypeError, OverflowError, IndexError, MemoryError) as exc:
        # MemoryError: the worker's RLIMIT_AS turned an allocation bomb into an exception.
        raise CiphertextError(message) from exc


@dataclass
class LoadedContext:
    """A tenant's public evaluation keys, loaded and validated against the plan."""

    seal_context: Any
    relin_keys: Any
    galois_keys: Any
    nbytes: int


def load_public_context(msg: PublicContextMessage, plan: HEPlan) -> LoadedContext:
    """Load keys from a decoded context message; refuse anything but the plan's parameters."""
    params = plan.ckks
    if msg.scale and msg.scale != params.scale:
        raise CiphertextError("context scale differs from the plan")
    with map_seal_errors("invalid encryption parameters"):
        parms = seal_load(sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS), msg.encryption_parameters)
        if parms.scheme() != sa.SCHEME_TYPE.CKKS:
            raise CiphertextError("context is not CKKS")
        context = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise CiphertextError("parameters are not 128-bit secure")
    # Same bit sizes are not enough: other primes of those sizes give another parms_id, and
    # the plan's encoded weights and ciphertext checks are tied to the plan's own primes.
    expected = build_seal_context(params)
    if not context_params_match(context, params) or list(context.key_parms_id()) != list(
        expected.key_parms_id()
    ):
        raise CiphertextError("context parameters differ from the plan")
    with map_seal_errors("invalid relinearisation keys"):
        relin = seal_load(sa.RelinKeys(), msg.relin_keys, context)
    if not sa.is_valid_for(relin, context) or relin.size() == 0:
        raise CiphertextError("invalid relinearisation keys")
    galois = sa.GaloisKeys()
    if plan.galois_steps:
        if not msg.galois_keys:
            raise CiphertextError("context lacks the Galois keys the plan needs")
        with map_seal_errors("invalid Galois keys"):
            seal_load(galois, msg.galois_keys, context)
        needed = {galois_element(s, params.poly_modulus_degree) for s in plan.galois_steps}
        if not all(galois.has_key(e) for e in needed):
            raise CiphertextError("context lacks Galois keys for the plan's rotation steps")
        if galois.size() != len(needed):
            raise CiphertextError("context holds Galois keys the plan does not need")
    elif msg.galois_keys:
        raise CiphertextError("context holds Galois keys the plan does not need")
    size = len(msg.encryption_parameters) + len(msg.relin_keys) + len(msg.galois_keys)
    return LoadedContext(context, relin, galois, size)


@dataclass
class EncodedModel:
    """Plaintext weights encoded once per (level, scale) and reused by every request."""

    compiled: CompiledModel
    context: Any
    encoder: Any
    evaluator: Any
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    _scratch: Any = None

    @classmethod
    def build(cls, compiled: CompiledModel) -> EncodedModel:
        context = build_seal_context(compiled.plan.ckks)
        return cls(compiled, context, sa.CKKSEncoder(context), sa.Evaluator(context))

    def last_prime(self, parms_id: Any) -> float:
        """The prime the next rescale drops: weights encoded at it keep the scale exact."""
        return float(self.context.get_context_data(parms_id).parms().coeff_modulus()[-1].value())

    def plain(self, key: str, values: Any, parms_id: Any, scale: float) -> Any:
        """Encode (or fetch) a plaintext vector at this level and scale."""
        cache_key = (key, tuple(parms_id), scale)
        hit = self.cache.get(cache_key)
        if hit is None:
            hit = sa.Plaintext()
            self.encoder.encode([float(v) for v in values], parms_id, scale, hit)
            self.cache[cache_key] = hit
        return hit

    def scalar(self, value: float, parms_id: Any, scale: float) -> Any:
        """Encode a constant into a reused buffer (~5 us): valid until the next call."""
        if self._scratch is None:
            self._scratch = sa.Plaintext()
        self.encoder.encode(float(value), parms_id, scale, self._scratch)
        return self._scratch


def validate_ciphertext(blob: bytes, model: EncodedModel, max_bytes: int) -> Any:
    """Vector message -> one SEAL ciphertext at the plan's top level and scale, or 4xx."""
    params: CKKSParams = model.compiled.plan.ckks
    msg = decode_vector(blob, slots=params.slots, max_chunks=1, max_ciphertext_bytes=max_bytes)
    if msg.scale != params.scale:
        raise CiphertextError("ciphertext scale differs from the plan")
    with map_seal_errors("invalid ciphertext"):
        ct = seal_load(sa.Ciphertext(), msg.ciphertexts[0], model.context)
    if (
        ct.size() != 2
        or not ct.is_ntt_form()
        or list(ct.parms_id()) != list(model.context.first_parms_id())
        or ct.scale != params.scale
        or not sa.is_valid_for(ct, model.context)
    ):
        raise CiphertextError("ciphertext does not match the plan")
    return ct


def _to_message(ct: Any, size: int) -> bytes:
    return encode_vector([size], [seal_save(ct)], ct.scale)


def decompose_step(step: int, keyed: list[int]) -> list[int]:
    """Write `step` as a sum of steps that have Galois keys (largest first)."""
    parts, rest = [], step
    for key in sorted(keyed, reverse=True):
        while rest >= key:
            parts.append(key)
            rest -= key
    if rest:
        raise CiphertextError("plan rotation cannot be built from its Galois keys")
    return parts


def _rotate_sum(model: EncodedModel, keys: LoadedContext, ct: Any, steps: list[int]) -> None:
    """ct += rot(ct, s) for each s: after log2(n) steps every slot holds a block sum."""
    ev = model.evaluator
    keyed = model.compiled.plan.galois_steps
    tmp = sa.Ciphertext()
    for step in steps:
        first, *rest = decompose_step(step, keyed)
        ev.rotate_vector(ct, first, keys.galois_keys, tmp)
        for part in rest:
            ev.rotate_vector_inplace(tmp, part, keys.galois_keys)
        ev.add_inplace(ct, tmp)


def _activate(model: EncodedModel, keys: LoadedContext, ct: Any, shift: float) -> None:
    """ct <- ct * (ct + shift): the degree-2 activation, one level."""
    ev = model.evaluator
    if shift == 0.0:
        ev.square_inplace(ct)
    else:
        other = sa.Ciphertext()
        ev.add_plain(ct, model.scalar(shift, ct.parms_id(), ct.scale), other)
        ev.multiply_inplace(ct, other)
    ev.relinearize_inplace(ct, keys.relin_keys)
    ev.rescale_to_next_inplace(ct)


def _single_layouts(model: EncodedModel) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
    """Slot layouts of each stage's weights and bias for the replicated single-sample packing."""
    plan, stages = model.compiled.plan, model.compiled.stages
    assert plan.single is not None
    slots = plan.ckks.slots
    period, rep = plan.single.input_period, plan.single.input_repeat
    s = np.arange(slots)
    w0 = stages[0].weight
    i, j = (s % period) // rep, s % rep
    ok = (i < w0.shape[1]) & (j < w0.shape[0])
    wa = np.where(ok, w0[np.minimum(j, w0.shape[0] - 1), np.minimum(i, w0.shape[1] - 1)], 0.0)
    ba = np.where(j < w0.shape[0], stages[0].bias[np.minimum(j, w0.shape[0] - 1)], 0.0)
    steps_a = [rep << t for t in range(int(math.log2(period // rep)))]
    layouts = [(wa, ba, steps_a)]
    if len(stages) == 2:
        w1 = stages[1].weight
        k, jj = s // rep, s % rep
        ok = (k < w1.shape[0]) & (jj < w1.shape[1])
        wb = np.where(ok, w1[np.minimum(k, w1.shape[0] - 1), np.minimum(jj, w1.shape[1] - 1)], 0.0)
        bb = np.zeros(slots)
        bb[np.array(plan.single.output_slots)] = stages[1].bias
        layouts.append((wb, bb, [1 << t for t in range(int(math.log2(rep)))]))
    return layouts


def evaluate_single(model: EncodedModel, keys: LoadedContext, ct: Any) -> Any:
    """One sample: per stage a plaintext multiply, a rescale and a rotate-and-sum."""
    layouts = model.cache.get(("layouts",))
    if layouts is None:
        layouts = model.cache[("layouts",)] = _single_layouts(model)
    ev = model.evaluator
    for idx, (stage, (w, b, steps)) in enumerate(zip(model.compiled.stages, layouts, strict=True)):
        pid = ct.parms_id()
        ev.multiply_plain_inplace(ct, model.plain(f"s{idx}.w", w, pid, model.last_prime(pid)))
        ev.rescale_to_next_inplace(ct)
        _rotate_sum(model, keys, ct, steps)
        ev.add_plain_inplace(ct, model.plain(f"s{idx}.b", b, ct.parms_id(), ct.scale))
        if stage.act_shift is not None:
            _activate(model, keys, ct, stage.act_shift)
    return ct


def _batched_stage(
    model: EncodedModel, keys: LoadedContext, xs: list[Any], stage: FoldedStage, idx: int
) -> list[Any]:
    ev = model.evaluator
    pid = xs[0].parms_id()
    wscale = model.last_prime(pid)
    outs = []
    for k in range(stage.weight.shape[0]):
        acc: Any = None
        term = sa.Ciphertext()
        for j, x in enumerate(xs):
            w = float(stage.weight[k, j])
            if w == 0.0:
                continue
            ev.multiply_plain(x, model.scalar(w, pid, wscale), term)
            if acc is None:
                acc, term = term, sa.Ciphertext()
            else:
                ev.add_inplace(acc, term)
        if acc is None:  # an all-zero row: encrypt nothing, reuse a zeroed product
            acc = sa.Ciphertext()
            ev.multiply_plain(xs[0], model.scalar(0.0, pid, wscale), acc)
        # Lazy rescale: one per output instead of one per product.
        ev.rescale_to_next_inplace(acc)
        ev.add_plain_inplace(acc, model.scalar(float(stage.bias[k]), acc.parms_id(), acc.scale))
        if stage.act_shift is not None:
            _activate(model, keys, acc, stage.act_shift)
        outs.append(acc)
    return outs


def evaluate_batched(model: EncodedModel, keys: LoadedContext, xs: list[Any]) -> list[Any]:
    """Many samples, feature-major: scalar multiplies and additions, no rotations."""
    for idx, stage in enumerate(model.compiled.stages):
        xs = _batched_stage(model, keys, xs, stage, idx)
    return xs


def run_request(
    model: EncodedModel,
    keys: LoadedContext,
    packing: str,
    n_samples: int,
    blobs: tuple[bytes, ...],
    max_ciphertext_bytes: int,
) -> list[bytes]:
    """Validate and evaluate one request's ciphertexts; return the result vector messages."""
    plan = model.compiled.plan
    with map_seal_errors("evaluation failed on this ciphertext"):
        if packing == "single":
            if plan.single is None:
                raise CiphertextError("this model has no single-sample packing")
            if len(blobs) != n_samples:
                raise CiphertextError("single packing needs one ciphertext per sample")
            cts = [validate_ciphertext(b, model, max_ciphertext_bytes) for b in blobs]
            return [_to_message(evaluate_single(model, keys, ct), plan.ckks.slots) for ct in cts]
        if packing == "batched":
            if len(blobs) != plan.batched.input_ciphertexts:
                raise CiphertextError("batched packing needs one ciphertext per input feature")
            if not 0 < n_samples <= plan.batched.samples_per_ciphertext:
                raise CiphertextError("too many samples for one batch")
            cts = [validate_ciphertext(b, model, max_ciphertext_bytes) for b in blobs]
            return [_to_message(ct, n_samples) for ct in evaluate_batched(model, keys, cts)]
    raise CiphertextError("unknown packing")


class LRU(OrderedDict[str, Any]):
    """A tiny bounded cache (contexts per worker)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)

    def fetch(self, key: str) -> Any | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value
