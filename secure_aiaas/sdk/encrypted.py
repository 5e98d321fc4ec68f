"""`AsyncEncryptedClient`: CKKS inference end to end, asynchronously (`EncryptedClient` wraps it).

The secret key stays on this machine: the client fetches the model's plan, builds a matching
context, uploads the public evaluation keys once per model, encrypts, sends, decrypts. A
context the service no longer has (expired, or the service restarted) is uploaded again,
transparently: before its announced expiry passes, or once on a 404. Key generation,
encryption and decryption are CPU work: they run in worker threads, so the event loop stays
responsive. The HTTP contract is in docs/sdk.md ("HTTP contract").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np

from secure_aiaas.crypto.he_wire import (
    CONTENT_TYPE,
    InferenceRequest,
    decode_response,
    encode_request,
)
from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.schemas import ContextCreated
from secure_aiaas.sdk._http import Http, HttpClient, RetryPolicy, model_name, parse, path_segment
from secure_aiaas.sdk.he import PlanView, SecretContext
from secure_aiaas.sdk.plaintext import DEFAULT_RETRY

SINGLE_PACKING_MAX = 8  # "auto": up to this many samples go one ciphertext each
EXPIRY_MARGIN_S = 60.0  # re-upload this long before the announced expiry (at most 10 % of it)
PACKINGS = ("auto", "single", "batched")


def _as_2d(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    return arr[None, :] if arr.ndim == 1 else arr.reshape(len(arr), -1)


def _probabilities(logits: np.ndarray, output: str) -> np.ndarray:
    if output == "logit":
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


class _EncryptedBase:
    """Key storage and request framing (no I/O here)."""

    def __init__(self, key_dir: str | Path | None, passphrase: str | None) -> None:
        if (key_dir is None) != (passphrase is None):
            raise InputError("key_dir and passphrase go together")
        self._key_dir = Path(key_dir).expanduser() if key_dir is not None else None
        self._passphrase = passphrase
        self._sessions: dict[str, SecretContext] = {}

    def _key_path(self, model: str) -> Path | None:
        return self._key_dir / f"{model_name(model)}.he-secret.json" if self._key_dir else None

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
        """(sample count, request frame) per request needed for `x` under `packing`."""
        if session.context_id is None:
            raise InputError("the context is not uploaded yet")
        if packing not in PACKINGS:
            raise InputError(f"packing: one of {', '.join(PACKINGS)}")
        context_id, n = session.context_id, len(x)
        if packing == "auto":
            packing = "single" if session.plan.single and n <= SINGLE_PACKING_MAX else "batched"
        if packing == "single":
            blobs = session.encrypt_single(x)
            step = SINGLE_PACKING_MAX
            return [
                (len(part), encode_request(InferenceRequest(context_id, "single", len(part),
                                                            tuple(part))))
                for part in (blobs[i : i + step] for i in range(0, n, step))
            ]  # fmt: skip
        per = int(session.plan.batched["samples_per_ciphertext"])
        out = []
        for i, batch in enumerate(session.encrypt_batched(x)):
            count = min(per, n - i * per)
            frame = InferenceRequest(context_id, "batched", count, tuple(batch))
            out.append((count, encode_request(frame)))
        return out

    @staticmethod
    def _decode(session: SecretContext, body: bytes, n: int) -> np.ndarray:
        response = decode_response(body)
        if response.packing == "single":
            return session.decrypt_single(list(response.ciphertexts))
        return session.decrypt_batched(list(response.ciphertexts), n)


class AsyncEncryptedClient(_EncryptedBase, HttpClient):
    """``await AsyncEncryptedClient(url, key).predict("digits-mlp", x)``: encrypted inference.

    `predict` returns the decrypted model outputs (logits; for a "logit" plan apply the
    sigmoid, e.g. with `predict_proba`). With `key_dir` and `passphrase` the secret context
    is saved encrypted and reused across runs. Other arguments as `AsyncClient`'s.
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
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(key_dir, passphrase)
        self._http = Http(base_url, api_key, timeout=timeout, transport=transport, retry=retry)
        self._locks: dict[str, anyio.Lock] = {}
        self._deadlines: dict[str, float] = {}  # model -> monotonic time to re-upload by

    async def plan(self, model: str) -> PlanView:
        """The model's published CKKS plan (``GET /v1/he/models/{model}``)."""
        response = await self._http.send("GET", f"/v1/he/models/{model_name(model)}")
        return PlanView.from_json(response.text)

    async def _upload(self, model: str, session: SecretContext) -> None:
        public_context = await anyio.to_thread.run_sync(session.public_context)
        response = await self._http.send(
            "POST", "/v1/he/contexts", params={"model": model}, content=public_context,
            content_type=CONTENT_TYPE, idempotent=False,
        )  # fmt: skip
        created = parse(ContextCreated, response)
        session.context_id = created.context_id
        ttl = max(0.0, created.expires_in_s)
        self._deadlines[model] = time.monotonic() + ttl - min(EXPIRY_MARGIN_S, ttl / 10)
        await anyio.to_thread.run_sync(self._persist, model, session)

    def _lock(self, model: str) -> anyio.Lock:
        # Created on first use, inside the event loop that will await it.
        return self._locks.setdefault(model, anyio.Lock())

    async def session(self, model: str) -> SecretContext:
        """The secret context for `model`, its public part uploaded (once, until it expires)."""
        async with self._lock(model):
            session = self._sessions.get(model)
            if session is None:
                plan = await self.plan(model)
                session = await anyio.to_thread.run_sync(self._restore, model, plan)
                self._sessions[model] = session  # keys kept even if the upload below fails
            deadline = self._deadlines.get(model)
            if session.context_id is None or (deadline is not None
                                              and time.monotonic() >= deadline):  # fmt: skip
                await self._upload(model, session)
            return session

    async def _reupload(self, model: str, session: SecretContext, stale: str | None) -> None:
        async with self._lock(model):
            if session.context_id == stale:  # not already replaced by a concurrent call
                await self._upload(model, session)

    async def predict(self, model: str, x: Any, *, packing: str = "auto") -> np.ndarray:
        """Decrypted outputs for each row of `x`, evaluated by the service on ciphertexts.

        `packing`: "single" (one ciphertext per sample, lowest latency), "batched" (one per
        feature, throughput) or "auto" (single up to 8 samples when the plan offers it).
        """
        x = _as_2d(x)
        session = await self.session(model)
        for attempt in (1, 2):
            used = session.context_id
            try:
                requests = await anyio.to_thread.run_sync(self._requests, session, x, packing)
                parts = []
                for count, body in requests:
                    response = await self._http.send(
                        "POST", f"/v1/he/models/{model_name(model)}/infer", content=body,
                        content_type=CONTENT_TYPE,
                    )  # fmt: skip
                    parts.append(await anyio.to_thread.run_sync(
                        self._decode, session, response.content, count))  # fmt: skip
                return np.concatenate(parts)
            except NotFoundError:
                if attempt == 2:  # the service forgot the context again: give up
                    raise
                await self._reupload(model, session, stale=used)
        raise AssertionError("unreachable")  # pragma: no cover

    async def predict_proba(self, model: str, x: Any, *, packing: str = "auto") -> np.ndarray:
        """`predict`, then the sigmoid ("logit" plans) or softmax ("logits"), here."""
        logits = await self.predict(model, x, packing=packing)
        return _probabilities(logits, (await self.session(model)).plan.output)

    async def forget(self, model: str) -> None:
        """Delete the uploaded context on the service (the local secret key is kept)."""
        async with self._lock(model):
            session = self._sessions.pop(model, None)
            self._deadlines.pop(model, None)
            if session is not None and session.context_id is not None:
                context_id, session.context_id = session.context_id, None
                await anyio.to_thread.run_sync(self._persist, model, session)
                await self._http.send("DELETE", f"/v1/he/contexts/{path_segment(context_id)}")
