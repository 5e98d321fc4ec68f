"""HTTP clients: `Client` (plaintext REST) and `EncryptedClient` (CKKS end to end), sync + async.

The encrypted clients keep the secret key on this machine: they fetch the model's plan, build a
matching context, upload the public evaluation keys once per model, encrypt, send, decrypt.
The HTTP contract is written down in docs/sdk.md ("HTTP contract").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import httpx
import numpy as np

from secure_aiaas.crypto.he_wire import (
    CONTENT_TYPE,
    InferenceRequest,
    decode_response,
    encode_request,
)
from secure_aiaas.errors import (
    AuthenticationError,
    AuthorizationError,
    CiphertextError,
    InputError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceError,
)
from secure_aiaas.sdk.he import PlanView, SecretContext

_STATUS: dict[int, type[ServiceError]] = {
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: InputError,
    429: RateLimitedError,
    503: OverloadedError,
}
SINGLE_PACKING_MAX = 8  # "auto": up to this many samples go one ciphertext each


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        # The service answers {"error": <public message>, "code": <error code>, "request_id"}.
        body = response.json()
        code, detail = str(body.get("code", "")), str(body.get("error", ""))
    except ValueError:
        code, detail = "", ""
    cls = _STATUS.get(response.status_code, ServiceError)
    if cls is InputError and code == CiphertextError.code:
        cls = CiphertextError
    raise cls(detail or None)


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _v2_body(inputs: Any, name: str) -> dict[str, Any]:
    arr = np.asarray(inputs)
    dtype = "FP32" if arr.dtype.kind == "f" else "INT64" if arr.dtype.kind in "iu" else "BYTES"
    data = arr.astype(np.float32).ravel().tolist() if dtype == "FP32" else arr.ravel().tolist()
    return {"inputs": [{"name": name, "shape": list(arr.shape), "datatype": dtype, "data": data}]}


def _v2_output(body: dict[str, Any], name: str | None) -> np.ndarray:
    outputs = body["outputs"]
    out = next((o for o in outputs if o["name"] == name), outputs[0]) if name else outputs[0]
    return np.asarray(out["data"]).reshape(out["shape"])


class Client:
    """Plaintext REST client: KServe v2 inference, OpenAI-style embeddings, whoami."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )
        self._input_names: dict[str, str] = {}

    def metadata(self, model: str) -> dict[str, Any]:
        """The model's v2 metadata: versions, input and output names, shapes, datatypes."""
        response = self._http.get(f"/v2/models/{model}")
        _raise_for(response)
        return dict(response.json())

    def infer(self, model: str, inputs: Any, *, input_name: str | None = None,
              output: str | None = None) -> np.ndarray:
        """One output of the model (default: its first, e.g. logits) for a batch of rows."""
        if input_name is None:
            if model not in self._input_names:
                self._input_names[model] = self.metadata(model)["inputs"][0]["name"]
            input_name = self._input_names[model]
        response = self._http.post(f"/v2/models/{model}/infer", json=_v2_body(inputs, input_name))
        _raise_for(response)
        return _v2_output(response.json(), output)

    def embeddings(self, texts: list[str], model: str) -> list[list[float]]:
        response = self._http.post("/v1/embeddings", json={"input": texts, "model": model})
        _raise_for(response)
        return [item["embedding"] for item in response.json()["data"]]

    def whoami(self) -> dict[str, Any]:
        response = self._http.get("/v1/whoami")
        _raise_for(response)
        return dict(response.json())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EncryptedBase:
    """State shared by the sync and async encrypted clients (no I/O here)."""

    def __init__(self, key_dir: str | Path | None, passphrase: str | None) -> None:
        if (key_dir is None) != (passphrase is None):
            raise InputError("key_dir and passphrase go together")
        self._key_dir = Path(key_dir) if key_dir is not None else None
        self._passphrase = passphrase
        self._sessions: dict[str, SecretContext] = {}

    def _key_path(self, model: str) -> Path | None:
        return self._key_dir / f"{model}.he-secret.json" if self._key_dir else None

    def _restore(self, model: str, plan: PlanView) -> SecretContext:
        path = self._key_path(model)
        if path is not None and path.exists():
            session = SecretContext.load(path, self._passphrase or "")
            if session.plan.fingerprint == plan.fingerprint:
                return session
        return SecretContext.create(plan)

    def _persist(self, model: str, session: SecretContext) -> None:
        path = self._key_path(model)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            session.save(path, self._passphrase or "")

    @staticmethod
    def _requests(session: SecretContext, x: np.ndarray, packing: str) -> list[tuple[int, bytes]]:
        assert session.context_id is not None
        n = len(x)
        if packing == "auto":
            packing = "single" if session.plan.single and n <= SINGLE_PACKING_MAX else "batched"
        if packing == "single":
            blobs = session.encrypt_single(x)
            step = SINGLE_PACKING_MAX
            return [
                (
                    len(blobs[i : i + step]),
                    encode_request(
                        InferenceRequest(
                            session.context_id,
                            "single",
                            len(blobs[i : i + step]),
                            tuple(blobs[i : i + step]),
                        )
                    ),
                )
                for i in range(0, n, step)
            ]
        per = int(session.plan.batched["samples_per_ciphertext"])
        out = []
        for i, batch in enumerate(session.encrypt_batched(x)):
            count = min(per, n - i * per)
            out.append(
                (
                    count,
                    encode_request(
                        InferenceRequest(session.context_id, "batched", count, tuple(batch))
                    ),
                )
            )
        return out

    @staticmethod
    def _decode(session: SecretContext, body: bytes, n: int) -> np.ndarray:
        response = decode_response(body)
        if response.packing == "single":
            return session.decrypt_single(list(response.ciphertexts))
        return session.decrypt_batched(list(response.ciphertexts), n)


def _as_2d(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    return arr[None, :] if arr.ndim == 1 else arr.reshape(len(arr), -1)


class EncryptedClient(_EncryptedBase):
    """`EncryptedClient(url, key).predict("digits-mlp", x)`: encrypted inference, sync.

    `predict` returns the decrypted model outputs (logits; for a "logit" plan apply the
    sigmoid, e.g. with `predict_proba`). With `key_dir` and `passphrase` the secret context
    is saved encrypted and reused across runs.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        key_dir: str | Path | None = None,
        passphrase: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(key_dir, passphrase)
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def plan(self, model: str) -> PlanView:
        response = self._http.get(f"/v1/he/models/{model}")
        _raise_for(response)
        return PlanView.from_json(response.text)

    def _upload(self, model: str, session: SecretContext) -> None:
        response = self._http.post(
            "/v1/he/contexts",
            params={"model": model},
            content=session.public_context(),
            headers={"Content-Type": CONTENT_TYPE},
        )
        _raise_for(response)
        session.context_id = str(response.json()["context_id"])
        self._persist(model, session)

    def session(self, model: str) -> SecretContext:
        """The secret context for `model`, its public part uploaded (once)."""
        session = self._sessions.get(model)
        if session is None:
            session = self._restore(model, self.plan(model))
            if session.context_id is None:
                self._upload(model, session)
            self._sessions[model] = session
        return session

    def predict(self, model: str, x: Any, *, packing: str = "auto") -> np.ndarray:
        x = _as_2d(x)
        session = self.session(model)
        for attempt in (1, 2):
            try:
                parts = []
                for count, body in self._requests(session, x, packing):
                    response = self._http.post(
                        f"/v1/he/models/{model}/infer",
                        content=body,
                        headers={"Content-Type": CONTENT_TYPE},
                    )
                    _raise_for(response)
                    parts.append(self._decode(session, response.content, count))
                return np.concatenate(parts)
            except NotFoundError:
                if attempt == 2:  # the server forgot the context (restart): upload once more
                    raise
                self._upload(model, session)
        raise AssertionError("unreachable")  # pragma: no cover

    def predict_proba(self, model: str, x: Any, *, packing: str = "auto") -> np.ndarray:
        logits = self.predict(model, x, packing=packing)
        return _probabilities(logits, self.session(model).plan.output)

    def forget(self, model: str) -> None:
        """Delete the uploaded context on the server (the local secret key is kept)."""
        session = self._sessions.pop(model, None)
        if session is not None and session.context_id is not None:
            _raise_for(self._http.delete(f"/v1/he/contexts/{session.context_id}"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEncryptedClient(_EncryptedBase):
    """The async twin of `EncryptedClient` (same arguments, awaitable methods).

    Key generation and encryption are CPU work: they run in a thread so the caller's event
    loop stays responsive.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        key_dir: str | Path | None = None,
        passphrase: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(key_dir, passphrase)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def plan(self, model: str) -> PlanView:
        response = await self._http.get(f"/v1/he/models/{model}")
        _raise_for(response)
        return PlanView.from_json(response.text)

    async def _upload(self, model: str, session: SecretContext) -> None:
        import asyncio

        body = await asyncio.to_thread(session.public_context)
        response = await self._http.post(
            "/v1/he/contexts",
            params={"model": model},
            content=body,
            headers={"Content-Type": CONTENT_TYPE},
        )
        _raise_for(response)
        session.context_id = str(response.json()["context_id"])
        await asyncio.to_thread(self._persist, model, session)

    async def session(self, model: str) -> SecretContext:
        import asyncio

        session = self._sessions.get(model)
        if session is None:
            plan = await self.plan(model)
            session = await asyncio.to_thread(self._restore, model, plan)
            if session.context_id is None:
                await self._upload(model, session)
            self._sessions[model] = session
        return session

    async def predict(self, model: str, x: Any, *, packing: str = "auto") -> np.ndarray:
        import asyncio

        x = _as_2d(x)
        session = await self.session(model)
        for attempt in (1, 2):
            try:
                requests = await asyncio.to_thread(self._requests, session, x, packing)
                parts = []
                for count, body in requests:
                    response = await self._http.post(
                        f"/v1/he/models/{model}/infer",
                        content=body,
                        headers={"Content-Type": CONTENT_TYPE},
                    )
                    _raise_for(response)
                    parts.append(
                        await asyncio.to_thread(self._decode, session, response.content, count)
                    )
                return np.concatenate(parts)
            except NotFoundError:
                if attempt == 2:
                    raise
                await self._upload(model, session)
        raise AssertionError("unreachable")  # pragma: no cover

    async def forget(self, model: str) -> None:
        session = self._sessions.pop(model, None)
        if session is not None and session.context_id is not None:
            _raise_for(await self._http.delete(f"/v1/he/contexts/{session.context_id}"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _probabilities(logits: np.ndarray, output: str) -> np.ndarray:
    if output == "logit":
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))
