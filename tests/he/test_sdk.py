"""SDK end to end over the HTTP contract (docs/sdk.md), with the real pool behind it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from secure_aiaas.errors import AuthenticationError, CryptoError
from secure_aiaas.he import HEPool
from secure_aiaas.sdk import AsyncEncryptedClient, EncryptedClient, SecretContext
from tests.he.conftest import Trained, contract_handler, plaintext

pytestmark = pytest.mark.slow
URL = "http://saiaas.test"


def _handler(pool: HEPool) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """conftest's stand-in, answering a context upload as the real route does
    (`schemas.ContextCreated`: the id, the model and the seconds until it expires)."""
    handle = contract_handler(pool)

    async def routed(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await handle(request)
        if request.url.path == "/v1/he/contexts" and response.status_code == 201:
            body = {**response.json(), "model": request.url.params["model"],
                    "expires_in_s": 3600.0}  # fmt: skip
            return httpx.Response(201, json=body)
        return response

    return routed


def _sync_transport(pool: HEPool) -> httpx.MockTransport:
    handle = _handler(pool)
    return httpx.MockTransport(lambda request: asyncio.run(handle(request)))


@pytest.mark.parametrize("packing", ["auto", "single", "batched"])
def test_encrypted_client_predict(he_pool: HEPool, digits: Trained, packing: str) -> None:
    x = digits.x_test[:12]
    with EncryptedClient(URL, "test-key", transport=_sync_transport(he_pool)) as client:
        logits = client.predict("digits-mlp", x, packing=packing)
    np.testing.assert_allclose(logits, plaintext(digits.model, x), atol=0.05)


def test_logistic_model_returns_logit_and_proba(he_pool: HEPool, breast_cancer: Trained) -> None:
    x = breast_cancer.x_test[:5]
    with EncryptedClient(URL, "test-key", transport=_sync_transport(he_pool)) as client:
        logit = client.predict("breast-cancer-lr", x)
        proba = client.predict_proba("breast-cancer-lr", x)
        client.forget("breast-cancer-lr")
    ref = plaintext(breast_cancer.model, x)
    np.testing.assert_allclose(logit, ref, atol=0.05)
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-ref)), atol=0.02)


def test_async_client(he_pool: HEPool, digits: Trained) -> None:
    x = digits.x_test[:3]

    async def main() -> np.ndarray:
        transport = httpx.MockTransport(_handler(he_pool))
        async with AsyncEncryptedClient(URL, "test-key", transport=transport) as client:
            return await client.predict("digits-mlp", x)

    np.testing.assert_allclose(asyncio.run(main()), plaintext(digits.model, x), atol=0.05)


def test_keys_uploaded_once_and_secret_saved_encrypted(
    he_pool: HEPool, breast_cancer: Trained, tmp_path: Path
) -> None:
    uploads = []
    handle = _handler(he_pool)

    def counting(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/he/contexts":
            uploads.append(len(request.content))
        return asyncio.run(handle(request))

    transport = httpx.MockTransport(counting)
    x = breast_cancer.x_test[:3]
    with EncryptedClient(
        URL, "test-key", key_dir=tmp_path, passphrase="correct horse", transport=transport
    ) as client:
        first = client.predict("breast-cancer-lr", x)
        client.predict("breast-cancer-lr", x)
    # A new client restores the secret context from disk and reuses the uploaded keys.
    with EncryptedClient(
        URL, "test-key", key_dir=tmp_path, passphrase="correct horse", transport=transport
    ) as client:
        np.testing.assert_allclose(client.predict("breast-cancer-lr", x), first, atol=1e-3)
    assert len(uploads) == 1
    saved = next(tmp_path.iterdir())
    assert saved.stat().st_mode & 0o077 == 0
    body = json.loads(saved.read_text())
    assert "secret_key" in body and body["header"]["kdf"]["name"] == "scrypt"
    with pytest.raises(CryptoError):
        SecretContext.load(saved, "wrong passphrase")


def test_bad_api_key_is_401(he_pool: HEPool) -> None:
    with (
        EncryptedClient(URL, "wrong", transport=_sync_transport(he_pool)) as client,
        pytest.raises(AuthenticationError),
    ):
        client.predict("digits-mlp", np.zeros(64))


def test_sdk_imports_no_server_module() -> None:
    code = (
        "import sys; import secure_aiaas.sdk; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith("
        "('secure_aiaas.he', 'secure_aiaas.api', 'secure_aiaas.inference', 'secure_aiaas.policy', "
        "'secure_aiaas.audit', 'secure_aiaas.pipeline'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
