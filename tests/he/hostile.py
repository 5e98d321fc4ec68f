"""Hostile payloads from shared/reference/tenseal-hostile-inputs.txt, built with real TenSEAL.

Also `crash_tenseal`, run inside a pool worker to prove a native crash costs one pool only.
"""

from __future__ import annotations

import os

import tenseal as ts

from secure_aiaas.crypto.he_wire import encode_vector, parse_fields
from secure_aiaas.he import HEPlan


def tenseal_context(plan: HEPlan, *, galois: bool = False) -> ts.Context:
    params = plan.ckks
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    ctx.global_scale = params.scale
    if galois:
        ctx.generate_galois_keys()
    return ctx


def seal_ciphertext(vector_bytes: bytes) -> bytes:
    """The raw SEAL ciphertext inside a serialized CKKSVector (field 2)."""
    return next(v for n, _w, v in parse_fields(vector_bytes, 64) if n == 2)  # type: ignore[return-value]


def vector_messages(plan: HEPlan, legit: bytes) -> dict[str, bytes]:
    """Each malformed ciphertext probe, as the vector message a client would send."""
    params = plan.ckks
    ctx = tenseal_context(plan)
    ct = seal_ciphertext(legit)
    bfv = ts.context(ts.SCHEME_TYPE.BFV, 8192, plain_modulus=1032193)
    other = ts.context(ts.SCHEME_TYPE.CKKS, 16384, coeff_mod_bit_sizes=[60, 40, 40, 40, 60])
    other.global_scale = 2**40
    flipped = bytearray(legit)
    flipped[len(flipped) // 2] ^= 0x01
    huge_header = bytearray(ct)
    huge_header[8:16] = (2**40).to_bytes(8, "little")
    return {
        "ct_random": os.urandom(4096),
        "ct_empty": b"",
        "ct_truncated_half": legit[: len(legit) // 2],
        "ct_truncated_1byte": legit[:-1],
        "ct_bitflip_payload": bytes(flipped),
        "ct_bfv_as_ckks": ts.bfv_vector(bfv, [1, 2, 3]).serialize(),
        "ct_other_params": ts.ckks_vector(other, [1.0, 2.0]).serialize(),
        "ct_scale_nan": encode_vector([2], [ct], float("nan")),
        "ct_seal_header_huge_size": encode_vector([2], [bytes(huge_header)], params.scale),
        "ct_sizes_empty": encode_vector([], [ct], params.scale),
        "ct_sizes_huge": encode_vector([2**31], [ct], params.scale),
        "ct_sizes_mismatch": encode_vector([2, 2, 2], [ct], params.scale),
        "ct_sizes_over_slots": encode_vector([100000], [ct], params.scale),
        "ct_many_chunks": encode_vector([2] * 3, [ct] * 3, params.scale),
        "ct_wrong_scale": encode_vector([2], [ct], params.scale * 2),
        "ct_huge_vector_legit": ts.ckks_vector(ctx, [0.1] * 20_000).serialize(),
    }


def context_messages(plan: HEPlan, legit: bytes) -> dict[str, bytes]:
    """Each malformed public-context probe for `plan`."""
    ctx = tenseal_context(plan)
    flipped = bytearray(legit)
    for off in range(200, len(flipped), len(flipped) // 16):
        flipped[off] ^= 0xFF
    return {
        "context_random": os.urandom(4096),
        "context_empty": b"",
        "context_truncated": legit[: len(legit) // 2],
        "context_bitflip": bytes(flipped),
        "context_with_secret_key": ctx.serialize(save_secret_key=True),
        "mul_without_relin_keys": ctx.serialize(save_relin_keys=False, save_galois_keys=False),
        "dot_without_galois_keys": ctx.serialize(save_galois_keys=False),
    }


def insecure_context(scale: float) -> bytes:
    """N=2048 with 3x60-bit primes (180 > 54 bits allowed), relin keys attached."""
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[40, 20, 40])
    ctx.global_scale = 2**20
    from tenseal import sealapi as sa

    from secure_aiaas.crypto.he_params import seal_save
    from secure_aiaas.crypto.he_wire import encode_public_context

    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(2048)
    parms.set_coeff_modulus(sa.CoeffModulus.Create(2048, [60, 60, 60]))
    relin = seal_save(ctx.relin_keys().data)
    return encode_public_context(seal_save(parms), relin, b"", scale)


def crash_tenseal() -> None:
    """SIGSEGV in TenSEAL 0.3.18: a vector message with an empty size list, then decrypt."""
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    ctx.global_scale = 2**40
    ct = seal_ciphertext(ts.ckks_vector(ctx, [1.0, 2.0]).serialize())
    vec = ts.ckks_vector_from(ctx, encode_vector([], [ct], 2.0**40))
    vec.decrypt()


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):  # deterministic below 2^64
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def other_primes_context(plan: HEPlan) -> bytes:
    """A valid public context with the plan's bit sizes but other NTT-friendly primes."""
    from tenseal import sealapi as sa

    from secure_aiaas.crypto.he_params import galois_element, seal_save
    from secure_aiaas.crypto.he_wire import encode_public_context

    params = plan.ckks
    degree = params.poly_modulus_degree
    standard = sa.CoeffModulus.Create(degree, list(params.coeff_mod_bit_sizes))
    used = {m.value() for m in standard}
    primes = []
    for m in standard:  # the next smaller prime = 1 mod 2N with the same bit count
        candidate = m.value() - 2 * degree
        while not _is_prime(candidate) or candidate in used:
            candidate -= 2 * degree
        used.add(candidate)
        primes.append(sa.Modulus(candidate))
    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(degree)
    parms.set_coeff_modulus(primes)
    context = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
    keygen = sa.KeyGenerator(context)
    elements = [galois_element(s, degree) for s in plan.galois_steps]
    return encode_public_context(
        seal_save(parms),
        seal_save(keygen.create_relin_keys()),
        seal_save(keygen.create_galois_keys(elements)),
        params.scale,
    )
