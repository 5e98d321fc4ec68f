"""Property-based tests of the HE frame, vector and context decoders (hypothesis): whatever
bytes arrive, a decoder returns a well-formed value or refuses with a ServiceError (4xx) —
never another exception, never a value that breaks its own invariants."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_aiaas.crypto.he_wire import (
    InferenceRequest,
    InferenceResponse,
    decode_public_context,
    decode_request,
    decode_response,
    decode_vector,
    encode_request,
    encode_response,
    encode_vector,
)
from secure_aiaas.errors import InputError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
context_ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=64,
)
blobs = st.lists(st.binary(min_size=0, max_size=512), min_size=1, max_size=8)
requests = st.builds(
    InferenceRequest,
    context_id=context_ids,
    packing=st.sampled_from(["single", "batched"]),
    n_samples=st.integers(min_value=1, max_value=4096),
    ciphertexts=blobs.map(tuple),
)


@FAST
@given(requests)
def test_request_frames_round_trip(request: InferenceRequest) -> None:
    frame = encode_request(request)
    decoded = decode_request(
        frame, max_body=len(frame), max_ciphertexts=8, max_ciphertext_bytes=512
    )
    assert decoded == request


@FAST
@given(
    st.builds(
        InferenceResponse,
        packing=st.sampled_from(["single", "batched"]),
        n_samples=st.integers(min_value=1, max_value=4096),
        ciphertexts=blobs.map(tuple),
    )
)
def test_response_frames_round_trip(response: InferenceResponse) -> None:
    assert decode_response(encode_response(response)) == response


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_cleanly(data: bytes) -> None:
    for decode in (
        lambda b: decode_request(b, max_body=4096, max_ciphertexts=8, max_ciphertext_bytes=512),
        lambda b: decode_response(b),
        lambda b: decode_public_context(b, max_bytes=4096),
        lambda b: decode_vector(b, slots=4096, max_chunks=2, max_ciphertext_bytes=4096),
    ):
        try:
            decode(data)
        except InputError:
            pass  # CiphertextError / PayloadTooLargeError: a 4xx


@FAST
@given(requests, st.data())
def test_any_mutation_of_a_valid_frame_is_refused_or_decodes_to_a_valid_request(
    request: InferenceRequest, data: st.DataObject
) -> None:
    frame = bytearray(encode_request(request))
    if not frame:
        return
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        index = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
        frame[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(frame)))
    mutated = bytes(frame[:cut] if data.draw(st.booleans()) else frame)
    try:
        decoded = decode_request(
            mutated, max_body=len(mutated) + 1, max_ciphertexts=8, max_ciphertext_bytes=512
        )
    except InputError:
        return
    assert decoded.packing in ("single", "batched")
    assert len(decoded.ciphertexts) <= 8 and all(len(b) <= 512 for b in decoded.ciphertexts)
    assert decoded.context_id.isascii()


@FAST
@given(
    st.lists(st.integers(min_value=0, max_value=64), max_size=4),
    st.lists(st.binary(max_size=256), max_size=4),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_vector_decoder_refuses_or_round_trips(
    sizes: list[int], cts: list[bytes], scale: float
) -> None:
    try:
        blob = encode_vector(sizes, cts, scale)
    except (InputError, struct.error, ValueError, OverflowError):
        return
    try:
        decode_vector(blob, slots=4096, max_chunks=4, max_ciphertext_bytes=1 << 16)
    except InputError:
        pass
