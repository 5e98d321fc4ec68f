"""SDK end to end over the HTTP contract (docs/sdk.md), with the real pool behind it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from secure_aiaas.errors import AuthenticationError, CryptoError
from secure_aiaas.he import HEPool
from secure_aiaas.sdk import AsyncEncryptedClient, EncryptedClient, SecretContext
from tests.he.conftest import Trained, contract_handler, plaintext

pytestmark = pytest.mark.slow
URL = "http://saiaas.test"


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def _handler(pool: HEPool, expires_in_s: float = 3600.0,
             seen: list[tuple[str, int]] | None = None) -> Handler:  # fmt: skip
    """conftest's stand-in, answering a context upload as the real route does
    (`schemas.ContextCreated`: the id, the model and the seconds until it expires);
    with `seen`, it records (path, status) of every request."""
    handle = contract_handler(pool)

    async def routed(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await handle(request)
        if request.url.path == "/v1/he/contexts" and response.status_code == 201:
            body = {**response.json(), "model": request.url.params["model"],
                    "expires_in_s": expires_in_s}  # fmt: skip
            response = httpx.Response(201, json=body)
        if seen is not None:
            seen.append((request.url.path, response.status_code))
        return response

    return routed


def _sync_transport(pool: HEPool, **options: Any) -> httpx.MockTransport:
    handle = _handler(pool, **options)
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


def _calls(seen: list[tuple[str, int]], path_end: str) -> list[int]:
    return [status for path, status in seen if path.endswith(path_end)]


def test_a_forgotten_context_is_uploaded_again_once(he_pool: HEPool, digits: Trained) -> None:
    seen: list[tuple[str, int]] = []
    x = digits.x_test[:2]
    transport = _sync_transport(he_pool, seen=seen)
    with EncryptedClient(URL, "test-key", transport=transport) as client:
        first = client.predict("digits-mlp", x)
        context_id = client.session("digits-mlp").context_id
        assert context_id is not None
        he_pool.delete_context(context_id, owner="tenant-a")  # as a restart would
        again = client.predict("digits-mlp", x)
        assert client.session("digits-mlp").context_id not in (None, context_id)
    np.testing.assert_allclose(again, first, atol=1e-2)
    assert _calls(seen, "/contexts") == [201, 201]
    assert _calls(seen, "/infer") == [200, 404, 200]


def test_an_expiring_context_is_replaced_before_it_fails(
    he_pool: HEPool, breast_cancer: Trained
) -> None:
    seen: list[tuple[str, int]] = []
    x = breast_cancer.x_test[:2]
    transport = _sync_transport(he_pool, expires_in_s=0.0, seen=seen)
    with EncryptedClient(URL, "test-key", transport=transport) as client:
        client.predict("breast-cancer-lr", x)
        client.predict("breast-cancer-lr", x)
    assert _calls(seen, "/contexts") == [201, 201]
    assert _calls(seen, "/infer") == [200, 200]  # no 404 round trip


def test_concurrent_predictions_upload_once(he_pool: HEPool, breast_cancer: Trained) -> None:
    seen: list[tuple[str, int]] = []
    x = breast_cancer.x_test[:3]

    async def main() -> list[np.ndarray]:
        transport = httpx.MockTransport(_handler(he_pool, seen=seen))
        async with AsyncEncryptedClient(URL, "test-key", transport=transport) as client:
            results = await asyncio.gather(*(client.predict("breast-cancer-lr", x)
                                             for _ in range(3)))  # fmt: skip
            proba = await client.predict_proba("breast-cancer-lr", x)
            await client.forget("breast-cancer-lr")
            await client.predict("breast-cancer-lr", x)  # a fresh upload after forget
            return [*results, proba]

    *logits, proba = asyncio.run(main())
    for other in logits[1:]:
        np.testing.assert_allclose(other, logits[0], atol=1e-2)
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-logits[0])), atol=1e-2)
    assert _calls(seen, "/contexts") == [201, 201]
    assert [status for path, status in seen if path.startswith("/v1/he/contexts/")] == [204]


def test_sdk_imports_no_server_module() -> None:
    code = (
        "import sys; import secure_aiaas.sdk; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'fastapi', "
        "'starlette', 'casbin', 'presidio_analyzer', 'sqlalchemy') or m.startswith("
        "('secure_aiaas.he', 'secure_aiaas.api', 'secure_aiaas.inference', 'secure_aiaas.policy', "
        "'secure_aiaas.audit', 'secure_aiaas.pipeline', 'secure_aiaas.llm', "
        "'secure_aiaas.privacy', 'secure_aiaas.auth', 'secure_aiaas.scheduling'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
