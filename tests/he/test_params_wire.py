"""Parameter table and pure-Python wire decoding (no native code involved)."""

from __future__ import annotations

import struct

import pytest

from secure_aiaas.crypto.he_params import CKKSParams, choose_params, galois_element, validate_params
from secure_aiaas.crypto.he_wire import (
    InferenceRequest,
    InferenceResponse,
    decode_public_context,
    decode_request,
    decode_response,
    decode_vector,
    encode_public_context,
    encode_request,
    encode_response,
    encode_vector,
)
from secure_aiaas.errors import CiphertextError, InputError, PayloadTooLargeError

FAKE_SEAL = struct.pack("<HBBBBHQ", 0xA15E, 16, 4, 1, 0, 0, 24) + b"\x00" * 8


@pytest.mark.parametrize(
    ("degree", "bits", "ok"),
    [
        (4096, (39, 29, 39), True),
        (4096, (40, 30, 40), False),  # 110 > 109
        (8192, (50, 39, 39, 39, 50), True),  # 217
        (8192, (50, 30, 30, 30, 30, 50), False),  # 220 > 218 (SEAL refuses it too)
        (16384, (59, 40, 40, 40, 40, 40, 40, 40, 40, 59), True),  # 438
        (16384, (60, 40, 40, 40, 40, 40, 40, 40, 40, 60), False),  # 440
        (2048, (27, 27), False),  # not in the table
        (8192, (60, 61), False),  # prime too wide
    ],
)
def test_validate_params_table(degree: int, bits: tuple[int, ...], ok: bool) -> None:
    params = CKKSParams(degree, bits, 25)
    if ok:
        validate_params(params)
    else:
        with pytest.raises(InputError):
            validate_params(params)


@pytest.mark.parametrize(("depth", "degree"), [(1, 4096), (3, 8192), (6, 16384)])
def test_choose_params_picks_smallest_secure_ring(depth: int, degree: int) -> None:
    params = choose_params(depth, headroom_bits=10)
    assert params.poly_modulus_degree == degree
    assert params.depth == depth
    assert params.coeff_mod_bit_sizes[-1] >= params.coeff_mod_bit_sizes[0]  # special >= first


def test_choose_params_refuses_too_deep() -> None:
    with pytest.raises(InputError, match="depth"):
        choose_params(20, headroom_bits=10)


def test_galois_element_matches_seal() -> None:
    from tenseal import sealapi as sa

    from secure_aiaas.crypto.he_params import build_seal_context

    ctx = build_seal_context(CKKSParams(4096, (39, 29, 39), 29))
    keygen = sa.KeyGenerator(ctx)
    keys = sa.GaloisKeys()
    keygen.create_galois_keys([galois_element(s, 4096) for s in (1, 16)], keys)
    assert keys.has_key(galois_element(1, 4096)) and keys.has_key(galois_element(16, 4096))
    assert not keys.has_key(galois_element(2, 4096))


def test_vector_round_trip() -> None:
    msg = decode_vector(encode_vector([3], [FAKE_SEAL], 2.0**30), slots=4096)
    assert msg.sizes == (3,) and msg.ciphertexts == (FAKE_SEAL,) and msg.scale == 2.0**30


@pytest.mark.parametrize(
    ("sizes", "cts", "scale"),
    [
        ([], [FAKE_SEAL], 2.0**30),  # TenSEAL: SIGSEGV
        ([2**31], [FAKE_SEAL], 2.0**30),  # TenSEAL: size() = 2^64-ish
        ([100000], [FAKE_SEAL], 2.0**30),  # TenSEAL: reads past the buffer
        ([2, 2, 2], [FAKE_SEAL], 2.0**30),  # sizes mismatch
        ([2, 2], [FAKE_SEAL, FAKE_SEAL], 2.0**30),  # more chunks than allowed
        ([2], [FAKE_SEAL], float("nan")),
        ([2], [FAKE_SEAL], -1.0),
        ([2], [FAKE_SEAL[:-1]], 2.0**30),  # truncated
        (
            [2],
            [FAKE_SEAL[:8] + struct.pack("<Q", 2**40) + FAKE_SEAL[16:]],
            2.0**30,
        ),  # huge header size
        ([2], [b"\x00" * 24], 2.0**30),  # not SEAL
    ],
)
def test_vector_hostile_messages_rejected(sizes: list[int], cts: list[bytes], scale: float) -> None:
    with pytest.raises(CiphertextError):
        decode_vector(encode_vector(sizes, cts, scale), slots=4096, max_chunks=1)


@pytest.mark.parametrize(
    "blob", [b"", b"\x0a", b"\xff" * 11, b"\x0b\x00", b"\x12\x80\x80\x80\x80\x10"]
)
def test_vector_garbage_rejected(blob: bytes) -> None:
    with pytest.raises(CiphertextError):
        decode_vector(blob, slots=4096)


def test_vector_oversized_ciphertext_is_413() -> None:
    with pytest.raises(PayloadTooLargeError):
        decode_vector(encode_vector([2], [FAKE_SEAL], 1.0), slots=4096, max_ciphertext_bytes=16)


def test_public_context_round_trip_and_secret_key_refused() -> None:
    data = encode_public_context(FAKE_SEAL, FAKE_SEAL, b"", 2.0**30)
    msg = decode_public_context(data, max_bytes=1 << 20)
    assert msg.relin_keys == FAKE_SEAL and not msg.galois_keys and not msg.has_secret_key
    private = data + b"\x1a\x02\x0a\x00"  # field 3: TenSEALPrivateProto{secret_key}
    with pytest.raises(CiphertextError, match="secret key"):
        decode_public_context(private, max_bytes=1 << 20)
    with pytest.raises(PayloadTooLargeError):
        decode_public_context(data, max_bytes=len(data) - 1)


def test_frames_round_trip_and_reject_tampering() -> None:
    req = InferenceRequest("ctx-1", "single", 2, (b"abc", b"defg"))
    body = encode_request(req)
    assert decode_request(body, max_body=1000, max_ciphertexts=4, max_ciphertext_bytes=10) == req
    flipped = bytearray(body)
    flipped[-1] ^= 1
    with pytest.raises(CiphertextError, match="digest"):
        decode_request(bytes(flipped), max_body=1000, max_ciphertexts=4, max_ciphertext_bytes=10)
    with pytest.raises(PayloadTooLargeError):
        decode_request(body, max_body=len(body) - 1, max_ciphertexts=4, max_ciphertext_bytes=10)
    with pytest.raises(CiphertextError):
        decode_request(body, max_body=1000, max_ciphertexts=1, max_ciphertext_bytes=10)
    with pytest.raises(CiphertextError):
        decode_request(body[:-2], max_body=1000, max_ciphertexts=4, max_ciphertext_bytes=10)
    resp = InferenceResponse("batched", 5, (b"xyz",))
    assert decode_response(encode_response(resp)) == resp
