"""The process pool: registration checks, inference, hostile inputs, worker crashes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from secure_aiaas.crypto.he_wire import InferenceRequest, decode_response, encode_request
from secure_aiaas.errors import (
    CiphertextError,
    InputError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from secure_aiaas.he import CompiledModel, HELimits, HEPool, request_cap
from secure_aiaas.sdk.he import SecretContext
from tests.he.conftest import Trained, plaintext
from tests.he.hostile import (
    context_messages,
    crash_tenseal,
    insecure_context,
    other_primes_context,
    tenseal_context,
    vector_messages,
)

pytestmark = pytest.mark.slow
OWNER = "tenant-a"


@pytest.fixture(scope="module")
def digits_client(he_pool: HEPool) -> SecretContext:
    client = SecretContext.create(he_pool.plan("digits-mlp").to_json())
    client.context_id = asyncio.run(
        he_pool.register_context("digits-mlp", client.public_context(), owner=OWNER)
    )
    return client


def _infer(
    pool: HEPool,
    client: SecretContext,
    blobs: list[bytes],
    *,
    owner: str = OWNER,
    model: str = "digits-mlp",
) -> bytes:
    assert client.context_id is not None
    body = encode_request(InferenceRequest(client.context_id, "single", len(blobs), tuple(blobs)))
    return asyncio.run(pool.infer(model, body, owner=owner))


def _assert_serves(pool: HEPool, client: SecretContext, digits: Trained) -> None:
    x = digits.x_test[:2]
    out = client.decrypt_single(
        list(decode_response(_infer(pool, client, client.encrypt_single(x))).ciphertexts)
    )
    np.testing.assert_allclose(out, plaintext(digits.model, x), atol=0.05)


def test_register_and_infer(he_pool: HEPool, digits_client: SecretContext, digits: Trained) -> None:
    _assert_serves(he_pool, digits_client, digits)


def test_ciphertext_traffic_is_compact(
    he_pool: HEPool, digits_client: SecretContext, digits: Trained
) -> None:
    blobs = digits_client.encrypt_single(digits.x_test[:1])
    reply = _infer(he_pool, digits_client, blobs)
    assert len(blobs[0]) + len(reply) <= 500_000


@pytest.mark.parametrize(
    "probe",
    [
        "ct_random",
        "ct_empty",
        "ct_truncated_half",
        "ct_truncated_1byte",
        "ct_bfv_as_ckks",
        "ct_other_params",
        "ct_scale_nan",
        "ct_seal_header_huge_size",
        "ct_sizes_empty",
        "ct_sizes_huge",
        "ct_sizes_mismatch",
        "ct_sizes_over_slots",
        "ct_many_chunks",
        "ct_wrong_scale",
        "ct_huge_vector_legit",
    ],
)
def test_hostile_ciphertexts_get_4xx_and_pool_keeps_serving(
    he_pool: HEPool, digits_client: SecretContext, digits: Trained, probe: str
) -> None:
    legit = digits_client.encrypt_single(digits.x_test[:1])[0]
    blob = vector_messages(he_pool.plan("digits-mlp"), legit)[probe]
    with pytest.raises((CiphertextError, PayloadTooLargeError)):
        _infer(he_pool, digits_client, [blob])
    _assert_serves(he_pool, digits_client, digits)


def test_body_over_cap_is_413_before_parsing(he_pool: HEPool) -> None:
    plan = he_pool.plan("digits-mlp")
    body = b"\x00" * (request_cap(plan, he_pool.limits) + 1)  # the 663 MB probe, scaled down
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(he_pool.infer("digits-mlp", body, owner=OWNER))


def test_frame_corrupted_in_transit_is_refused(
    he_pool: HEPool, digits_client: SecretContext, digits: Trained
) -> None:
    blobs = digits_client.encrypt_single(digits.x_test[:1])
    assert digits_client.context_id is not None
    body = bytearray(
        encode_request(InferenceRequest(digits_client.context_id, "single", 1, tuple(blobs)))
    )
    body[len(body) // 2] ^= 0x01
    with pytest.raises(CiphertextError, match="digest"):
        asyncio.run(he_pool.infer("digits-mlp", bytes(body), owner=OWNER))


def test_ciphertext_under_another_key_only_hurts_the_sender(
    he_pool: HEPool, digits_client: SecretContext, digits: Trained
) -> None:
    """Indistinguishable by design (IND-CPA): served, but the result decrypts to garbage."""
    stranger = SecretContext.create(he_pool.plan("digits-mlp").to_json())
    x = digits.x_test[:1]
    reply = _infer(he_pool, digits_client, stranger.encrypt_single(x))
    garbage = digits_client.decrypt_single(list(decode_response(reply).ciphertexts))
    assert np.abs(garbage - plaintext(digits.model, x)).max() > 1e3
    _assert_serves(he_pool, digits_client, digits)


@pytest.mark.parametrize(
    "probe",
    [
        "context_random",
        "context_empty",
        "context_truncated",
        "context_bitflip",
        "context_with_secret_key",
        "mul_without_relin_keys",
        "dot_without_galois_keys",
    ],
)
def test_hostile_contexts_refused(
    he_pool: HEPool, digits_client: SecretContext, probe: str
) -> None:
    legit = digits_client.public_context()
    blob = context_messages(he_pool.plan("digits-mlp"), legit)[probe]
    with pytest.raises((CiphertextError, PayloadTooLargeError)):
        asyncio.run(he_pool.register_context("digits-mlp", blob, owner=OWNER))


def test_private_context_refused_with_reason(he_pool: HEPool) -> None:
    ctx = tenseal_context(he_pool.plan("breast-cancer-lr"), galois=False)
    with pytest.raises(CiphertextError, match="secret key"):
        asyncio.run(
            he_pool.register_context(
                "breast-cancer-lr", ctx.serialize(save_secret_key=True), owner=OWNER
            )
        )


def test_insecure_and_foreign_parameters_refused(
    he_pool: HEPool, digits_client: SecretContext
) -> None:
    scale = he_pool.plan("digits-mlp").ckks.scale
    with pytest.raises(CiphertextError, match="128-bit|parameters"):
        asyncio.run(he_pool.register_context("digits-mlp", insecure_context(scale), owner=OWNER))
    # A valid digits context offered for the LR model: other parameters than that plan.
    with pytest.raises(CiphertextError, match="differ|scale"):
        asyncio.run(
            he_pool.register_context(
                "breast-cancer-lr", digits_client.public_context(), owner=OWNER
            )
        )


def test_same_bit_sizes_other_primes_refused(he_pool: HEPool) -> None:
    plan = he_pool.plan("breast-cancer-lr")
    with pytest.raises(CiphertextError, match="differ"):
        asyncio.run(
            he_pool.register_context("breast-cancer-lr", other_primes_context(plan), owner=OWNER)
        )


def test_all_galois_keys_refused(he_pool: HEPool) -> None:
    """TenSEAL's default (every power-of-two step) is more key material than the plan needs."""
    ctx = tenseal_context(he_pool.plan("breast-cancer-lr"), galois=True)
    public = ctx.serialize(save_secret_key=False, save_public_key=False)
    with pytest.raises((CiphertextError, PayloadTooLargeError)):
        asyncio.run(he_pool.register_context("breast-cancer-lr", public, owner=OWNER))


def test_context_size_limit(he_pool: HEPool, digits_client: SecretContext) -> None:
    data = digits_client.public_context() + b"\x00" * (he_pool.limits.max_context_bytes)
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(he_pool.register_context("digits-mlp", data, owner=OWNER))


def test_contexts_are_per_tenant_and_per_model(
    he_pool: HEPool, digits_client: SecretContext, digits: Trained
) -> None:
    blobs = digits_client.encrypt_single(digits.x_test[:1])
    with pytest.raises(NotFoundError):
        _infer(he_pool, digits_client, blobs, owner="tenant-b")
    with pytest.raises(InputError):
        _infer(he_pool, digits_client, blobs, model="breast-cancer-lr")
    with pytest.raises(NotFoundError):
        asyncio.run(he_pool.register_context("no-such-model", b"x", owner=OWNER))


def test_delete_context(he_pool: HEPool, compiled: dict[str, CompiledModel]) -> None:
    client = SecretContext.create(he_pool.plan("breast-cancer-lr").to_json())
    cid = asyncio.run(
        he_pool.register_context("breast-cancer-lr", client.public_context(), owner=OWNER)
    )
    with pytest.raises(NotFoundError):
        he_pool.delete_context(cid, owner="tenant-b")
    he_pool.delete_context(cid, owner=OWNER)
    with pytest.raises(NotFoundError):
        he_pool.delete_context(cid, owner=OWNER)


def test_native_crash_costs_one_pool_and_server_keeps_serving(
    he_pool: HEPool, digits_client: SecretContext, digits: Trained
) -> None:
    before = he_pool.replacements
    with pytest.raises(CiphertextError, match="crashed"):
        he_pool.call_sync(crash_tenseal)  # a real SIGSEGV inside TenSEAL, in a worker
    assert he_pool.replacements >= before + 1
    # The replacement workers load the context again from the store and serve.
    _assert_serves(he_pool, digits_client, digits)


@pytest.mark.parametrize("tamper", ["lower_level", "size_three"])
def test_ciphertext_not_matching_the_plan_is_refused(
    he_pool: HEPool, digits_client: SecretContext, tamper: str
) -> None:
    """Well-formed SEAL ciphertexts the plan can't take: wrong level, or not relinearised."""
    from tenseal import sealapi as sa

    from secure_aiaas.crypto.he_params import seal_save
    from secure_aiaas.crypto.he_wire import encode_vector

    params = digits_client.plan.params
    plain = sa.Plaintext()
    digits_client.encoder.encode(
        [1.0] * params.slots, digits_client.context.first_parms_id(), params.scale, plain
    )
    ct = sa.Ciphertext()
    digits_client.encryptor.encrypt_symmetric(plain, ct)
    evaluator = sa.Evaluator(digits_client.context)
    if tamper == "lower_level":
        evaluator.mod_switch_to_next_inplace(ct)
    else:
        evaluator.square_inplace(ct)  # size 3; the scale changes too
        ct.scale = params.scale
    blob = encode_vector([params.slots], [seal_save(ct)], params.scale)
    # A third polynomial also pushes the ciphertext over the plan's size cap (413 first).
    expected = CiphertextError if tamper == "lower_level" else PayloadTooLargeError
    with pytest.raises(expected):
        _infer(he_pool, digits_client, [blob])


def test_queue_bound_gives_503(tmp_path: Path) -> None:
    """A full evaluation queue answers 503 at once instead of growing a backlog."""
    pool = HEPool(store_dir=tmp_path, workers=1, limits=HELimits(max_pending=1))
    pool.start()
    try:

        async def two_at_once() -> list[object]:
            slow = asyncio.ensure_future(pool.call(time.sleep, 1.0))
            await asyncio.sleep(0)  # let the first call take the only slot
            results: list[object] = []
            try:
                await pool.call(time.sleep, 0.0)
            except OverloadedError as exc:
                results.append(exc)
            results.append(await slow)
            return results

        first, second = asyncio.run(two_at_once())
        assert isinstance(first, OverloadedError) and second is None
        assert pool.call_sync(time.sleep, 0.0) is None  # the slot is free again
    finally:
        pool.close()
