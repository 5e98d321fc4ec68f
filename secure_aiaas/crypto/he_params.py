"""CKKS parameter sets: the 128-bit security table and their validation (server and SDK).

Only sets within the HomomorphicEncryption.org standard's classical 128-bit bounds for a
ternary secret are accepted, from clients and in plans. SEAL enforces the same table
(`sec_level_type.tc128`); checking here first turns a bad set into a clear `InputError`
before any native code sees it.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from multiprocessing.util import Finalize
from typing import Any

from secure_aiaas.errors import InputError

# poly_modulus_degree -> largest total coefficient-modulus bits (incl. the special prime).
MAX_COEFF_MODULUS_BITS_128: dict[int, int] = {4096: 109, 8192: 218, 16384: 438}
# SEAL primes are at most 60 bits; tiny primes leave no room for the rescaled value.
MIN_PRIME_BITS = 20
MAX_PRIME_BITS = 60


@dataclass(frozen=True)
class CKKSParams:
    """A CKKS parameter set: ring degree, prime bit sizes (last = special prime), scale bits."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def total_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    @property
    def depth(self) -> int:
        """Rescales available: data primes minus the one that holds the result."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    def to_dict(self) -> dict[str, object]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CKKSParams:
        try:
            degree = int(data["poly_modulus_degree"])  # type: ignore[call-overload]
            bits = tuple(int(b) for b in data["coeff_mod_bit_sizes"])  # type: ignore[attr-defined]
            scale_bits = int(data["scale_bits"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError("malformed CKKS parameters") from exc
        params = cls(degree, bits, scale_bits)
        validate_params(params)
        return params


def validate_params(params: CKKSParams) -> None:
    """Refuse any set outside the 128-bit table (raises `InputError` with the reason)."""
    limit = MAX_COEFF_MODULUS_BITS_128.get(params.poly_modulus_degree)
    if limit is None:
        allowed = sorted(MAX_COEFF_MODULUS_BITS_128)
        raise InputError(f"poly_modulus_degree must be one of {allowed}")
    bits = params.coeff_mod_bit_sizes
    if len(bits) < 2:
        raise InputError("coefficient modulus needs at least a data prime and a special prime")
    if any(not MIN_PRIME_BITS <= b <= MAX_PRIME_BITS for b in bits):
        raise InputError(f"each prime must have {MIN_PRIME_BITS}..{MAX_PRIME_BITS} bits")
    if params.total_bits > limit:
        raise InputError(
            f"{params.total_bits} coefficient-modulus bits exceed the 128-bit limit of {limit} "
            f"for N={params.poly_modulus_degree}"
        )
    if not MIN_PRIME_BITS <= params.scale_bits < bits[0]:
        raise InputError("scale must be smaller than the first prime")


def choose_params(depth: int, headroom_bits: int, min_scale_bits: int = 25) -> CKKSParams:
    """Smallest ring that fits `depth` rescales with the widest scale the budget allows.

    Layout: [scale + headroom] + depth * [scale] + [special]. The special prime is as wide as
    the first one: a narrower special prime multiplies the key-switching noise of every
    rotation (measured: logit error 0.014 with a 35-bit special prime against 0.0005 with 39).
    """
    for degree in sorted(MAX_COEFF_MODULUS_BITS_128):
        limit = MAX_COEFF_MODULUS_BITS_128[degree]
        scale_bits = math.floor((limit - 2 * headroom_bits) / (depth + 2))
        scale_bits = min(scale_bits, 40, MAX_PRIME_BITS - headroom_bits)
        if scale_bits < min_scale_bits:
            continue
        first = scale_bits + headroom_bits
        params = CKKSParams(degree, (first, *([scale_bits] * depth), first), scale_bits)
        validate_params(params)
        return params
    raise InputError(
        f"no 128-bit parameter set fits multiplicative depth {depth} "
        f"with {headroom_bits} bits of headroom"
    )


def galois_element(step: int, poly_modulus_degree: int) -> int:
    """SEAL's Galois element for a left rotation by `step` slots (0 < step < slots)."""
    slots = poly_modulus_degree // 2
    if not 0 < step < slots:
        raise InputError("rotation step out of range")
    return pow(3, step, 2 * poly_modulus_degree)


# --------------------------------------------------------------------------- SEAL glue
# tenseal.sealapi (de)serialises through file paths only; a private (0700) RAM-backed directory
# keeps that cheap and keeps key material off persistent disk. Files live for one call.
_io_dir: str | None = None


def _scratch_dir() -> str:
    global _io_dir
    if _io_dir is None or not os.path.isdir(_io_dir):
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        _io_dir = tempfile.mkdtemp(prefix="saiaas-seal-", dir=base)
        os.chmod(_io_dir, 0o700)
        atexit.register(shutil.rmtree, _io_dir, ignore_errors=True)
        # Pool workers leave through multiprocessing's exit path, which skips atexit.
        Finalize(
            None, shutil.rmtree, args=(_io_dir,), kwargs={"ignore_errors": True}, exitpriority=0
        )
    return _io_dir


def seal_save(obj: Any) -> bytes:
    """Bytes of a sealapi object (or `Serializable`) via its `save(path)` binding."""
    path = os.path.join(_scratch_dir(), uuid.uuid4().hex)
    try:
        obj.save(path)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def seal_load(obj: Any, data: bytes, context: Any | None = None) -> Any:
    """Load `data` into a fresh sealapi object; SEAL validates it against `context`."""
    path = os.path.join(_scratch_dir(), uuid.uuid4().hex)
    try:
        with open(path, "wb") as fh:
            fh.write(data)
        if context is None:
            obj.load(path)
        else:
            obj.load(context, path)
        return obj
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def build_seal_context(params: CKKSParams) -> Any:
    """A SEAL CKKS context for `params`, with SEAL's own 128-bit check switched on."""
    from tenseal import sealapi as sa

    validate_params(params)
    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    parms.set_coeff_modulus(
        sa.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes))
    )
    context = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise InputError("SEAL refused the parameter set")
    return context


def context_params_match(context: Any, params: CKKSParams) -> bool:
    """True when a loaded SEAL context has exactly the plan's ring and prime bit sizes."""
    parms = context.key_context_data().parms()
    bits = tuple(m.bit_count() for m in parms.coeff_modulus())
    return bool(
        parms.poly_modulus_degree() == params.poly_modulus_degree
        and bits == params.coeff_mod_bit_sizes
    )
