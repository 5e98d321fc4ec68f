"""Encrypted inference over real HTTP: SDK round trips, hostile input, refusals, policy, audit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from secure_aiaas.crypto.he_wire import CONTENT_TYPE, InferenceRequest, encode_request
from secure_aiaas.errors import AuthorizationError
from secure_aiaas.he import HEPlan
from secure_aiaas.sdk import AsyncEncryptedClient, Client, EncryptedClient
from secure_aiaas.sdk.he import SecretContext
from tests.conftest import Server, api_routes
from tests.he.hostile import context_messages, vector_messages
from tests.support.audit import request_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def he_key(model_server: Server) -> str:
    return model_server.api_keys["medco-he"]


def test_digits_both_packings_match_plaintext(model_server: Server, he_key: str) -> None:
    X, _ = load_digits(return_X_y=True)
    with Client(model_server.base_url, model_server.api_keys["alice"]) as plain:
        expected = np.asarray(plain.infer("digits-mlp", X[:300].astype(np.float32)))
    with EncryptedClient(model_server.base_url, he_key) as he:
        single = he.predict("digits-mlp", X[:4], packing="single")
        batched = he.predict("digits-mlp", X[:300], packing="batched")
    np.testing.assert_allclose(single, expected[:4], atol=0.05)
    np.testing.assert_allclose(batched, expected, atol=0.05)
    assert (batched.argmax(1) == expected.argmax(1)).mean() >= 0.995


def test_breast_cancer_logit_and_client_side_sigmoid(model_server: Server, he_key: str) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    with Client(model_server.base_url, model_server.api_keys["alice"]) as plain:
        expected = np.asarray(plain.infer("breast-cancer-lr", X.astype(np.float32))).reshape(-1)
    with EncryptedClient(model_server.base_url, he_key) as he:
        logits = he.predict("breast-cancer-lr", X).reshape(-1)
        proba = he.predict_proba("breast-cancer-lr", X[:3]).reshape(-1)
    assert np.max(np.abs(logits - expected)) < 0.05
    assert ((logits > 0) == (expected > 0)).mean() >= 0.995
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-expected[:3])), atol=0.02)


def test_async_client(model_server: Server, he_key: str) -> None:
    X, y = load_digits(return_X_y=True)

    async def run() -> np.ndarray:
        async with AsyncEncryptedClient(model_server.base_url, he_key) as he:
            return await he.predict("digits-mlp", X[:2])

    assert asyncio.run(run()).argmax(1).tolist() == y[:2].tolist()


def test_trusted_user_without_he_role_is_denied(model_server: Server) -> None:
    with (
        EncryptedClient(model_server.base_url, model_server.api_keys["alice"]) as he,
        pytest.raises(AuthorizationError),
    ):
        he.predict("digits-mlp", np.zeros((1, 64)))


def _register(server: Server, key: str, body: bytes, model: str = "digits-mlp") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/he/contexts",
        params={"model": model},
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": CONTENT_TYPE},
        timeout=60,
    )


@pytest.fixture(scope="module")
def session(model_server: Server, he_key: str) -> SecretContext:
    plan = httpx.get(
        f"{model_server.base_url}/v1/he/models/digits-mlp",
        headers={"Authorization": f"Bearer {he_key}"},
    ).text
    ctx = SecretContext.create(plan)
    response = _register(model_server, he_key, ctx.public_context())
    assert response.status_code == 201, response.text
    ctx.context_id = response.json()["context_id"]
    return ctx


def test_context_and_inference_are_audited_without_payload(
    model_server: Server, he_key: str, session: SecretContext
) -> None:
    blobs = session.encrypt_single(np.zeros((1, 64)))
    body = encode_request(InferenceRequest(session.context_id or "", "single", 1, tuple(blobs)))
    response = httpx.post(
        f"{model_server.base_url}/v1/he/models/digits-mlp/infer",
        content=body,
        headers={"Authorization": f"Bearer {he_key}", "Content-Type": CONTENT_TYPE},
    )
    assert response.status_code == 200
    assert len(body) + len(response.content) <= 500_000  # per single-sample request
    (record,) = request_records(model_server, response.headers["x-request-id"])
    he = record["details"]["he"]
    import hashlib

    assert he["context_id"] == session.context_id
    assert he["ciphertext_sha256"] == hashlib.sha256(body).hexdigest()
    assert record["tenant"] == "medco" and record["decision"] == "allow"
    assert blobs[0].hex()[:64] not in json.dumps(record)


def test_hostile_ciphertexts_get_4xx_and_server_keeps_serving(
    model_server: Server, he_key: str, session: SecretContext
) -> None:
    plan = HEPlan.from_json(
        httpx.get(
            f"{model_server.base_url}/v1/he/models/digits-mlp",
            headers={"Authorization": f"Bearer {he_key}"},
        ).text
    )
    legit = session.encrypt_single(np.zeros((1, 64)))[0]
    statuses = {}
    for name, blob in vector_messages(plan, legit).items():
        if name == "ct_bitflip_payload":
            continue  # undetectable in CKKS: it only garbles the sender's own result
        body = encode_request(InferenceRequest(session.context_id or "", "single", 1, (blob,)))
        response = httpx.post(
            f"{model_server.base_url}/v1/he/models/digits-mlp/infer",
            content=body,
            timeout=60,
            headers={"Authorization": f"Bearer {he_key}", "Content-Type": CONTENT_TYPE},
        )
        statuses[name] = response.status_code
        assert response.headers["content-type"].startswith("application/json")
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert model_server.process.poll() is None
    test_context_and_inference_are_audited_without_payload(model_server, he_key, session)


def test_hostile_and_private_contexts_refused(
    model_server: Server, he_key: str, session: SecretContext
) -> None:
    plan = HEPlan.from_json(
        httpx.get(
            f"{model_server.base_url}/v1/he/models/digits-mlp",
            headers={"Authorization": f"Bearer {he_key}"},
        ).text
    )
    for name, body in context_messages(plan, session.public_context()).items():
        response = _register(model_server, he_key, body)
        assert 400 <= response.status_code < 500, (name, response.status_code)
        if name == "context_with_secret_key":
            assert response.status_code == 422 and "secret" in response.json()["error"]
    too_big = _register(model_server, he_key, b"\0" * (17 << 20))
    assert too_big.status_code == 413
    assert model_server.process.poll() is None


def test_no_route_accepts_decrypted_results(model_server: Server) -> None:
    from secure_aiaas.api.app import create_app
    from secure_aiaas.config import Settings

    app = create_app(Settings(data_dir=model_server.data_dir, policy_dir=model_server.policy_dir))
    he_routes = sorted(
        (sorted(r.methods)[0], r.path) for r in api_routes(app) if r.path.startswith("/v1/he/")
    )
    # Plans out, keys in, ciphertexts in and out, contexts deleted: nothing else.
    assert he_routes == [
        ("DELETE", "/v1/he/contexts/{context_id}"),
        ("GET", "/v1/he/models/{name}"),
        ("POST", "/v1/he/contexts"),
        ("POST", "/v1/he/models/{name}/infer"),
    ]


def test_contexts_are_private_to_their_owner(
    model_server: Server, he_key: str, session: SecretContext
) -> None:
    other = model_server.cli(
        "apikey", "create", "--tenant", "acme", "--subject", "eve", "--role", "he-user", "--json"
    )
    eve = json.loads(other.stdout)["api_key"]
    blobs = session.encrypt_single(np.zeros((1, 64)))
    body = encode_request(InferenceRequest(session.context_id or "", "single", 1, tuple(blobs)))
    response = httpx.post(
        f"{model_server.base_url}/v1/he/models/digits-mlp/infer",
        content=body,
        headers={"Authorization": f"Bearer {eve}", "Content-Type": CONTENT_TYPE},
    )
    assert response.status_code == 404
    deleted = httpx.delete(
        f"{model_server.base_url}/v1/he/contexts/{session.context_id}",
        headers={"Authorization": f"Bearer {eve}"},
    )
    assert deleted.status_code == 404


def test_cli_client_predict_encrypted_and_plain(
    model_server: Server, he_key: str, tmp_path: Path
) -> None:
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "x.npy", X[:3])
    env = {
        **model_server.env,
        "SAIAAS_URL": model_server.base_url,
        "SAIAAS_API_KEY": he_key,
        "SAIAAS_HE_PASSPHRASE": "correct horse battery staple",
    }
    from tests.conftest import run_cli

    encrypted = run_cli(
        env,
        "client",
        "predict",
        str(tmp_path / "x.npy"),
        "--model",
        "digits-mlp",
        "--encrypted",
        "--key-dir",
        str(tmp_path / "he-keys"),
    )
    assert encrypted.returncode == 0, encrypted.stderr
    out = json.loads(encrypted.stdout)
    assert out["encrypted"] is True and out["shape"] == [3, 10]
    assert np.argmax(out["outputs"], axis=1).tolist() == y[:3].tolist()
    secret_files = list((tmp_path / "he-keys").iterdir())
    assert secret_files and all(f.stat().st_mode & 0o077 == 0 for f in secret_files)
    plain = run_cli(
        {**env, "SAIAAS_API_KEY": model_server.api_keys["medco-user"]},
        "client",
        "predict",
        str(tmp_path / "x.npy"),
        "--model",
        "digits-mlp",
    )
    assert plain.returncode == 1 and "not allowed" in plain.stderr  # sensitive: no plaintext
