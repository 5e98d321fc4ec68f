"""`AsyncClient`: the plaintext REST API, asynchronously (the core `Client` wraps).

KServe v2 inference, OpenAI-compatible embeddings and chat, personal-data scrubbing, the
audit trail. Bodies are the shared wire models of `secure_aiaas.schemas`, so a request the
service would refuse is refused here, before it is sent, with the same field-naming message;
replies are read into those models.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, overload

import anyio
import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

from secure_aiaas.schemas import (
    AuditEventsPage,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    CompletionUsage,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ExportRequest,
    JsonValue,
    ModelList,
    PublicKeys,
    ScrubRequest,
    ScrubResponse,
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    WhoAmI,
)
from secure_aiaas.sdk._errors import error_from_payload, invalid_request, invalid_response
from secure_aiaas.sdk._http import Http, HttpClient, RetryPolicy, model_name
from secure_aiaas.sdk._sse import sse_data

DEFAULT_RETRY = RetryPolicy()
SSE_MEDIA_TYPE = "text/event-stream"
M = TypeVar("M", bound=BaseModel)
AuditDecision = Literal["allow", "deny", "unauthenticated", "error", "attempt"]


def _request(model: type[M], fields: Mapping[str, Any]) -> M:
    """A request body built here, refused here when the service would refuse it."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _v2_request(inputs: Any, name: str) -> V2InferRequest:
    arr = np.asarray(inputs)
    dtype = "FP32" if arr.dtype.kind == "f" else "INT64" if arr.dtype.kind in "iu" else "BYTES"
    data = arr.astype(np.float32).ravel().tolist() if dtype == "FP32" else arr.ravel().tolist()
    tensor = {"name": name, "shape": list(arr.shape), "datatype": dtype, "data": data}
    return _request(V2InferRequest, {"inputs": [tensor]})


def _v2_body(inputs: Any, name: str) -> dict[str, Any]:
    """The JSON body of a one-input v2 inference request (for tools that post it themselves)."""
    return _v2_request(inputs, name).model_dump(mode="json", exclude_unset=True)


def _v2_output(response: V2InferResponse, name: str | None) -> np.ndarray:
    outputs = response.outputs
    if not outputs:
        raise invalid_response("the inference reply has no outputs")
    out = next((o for o in outputs if o.name == name), outputs[0]) if name else outputs[0]
    if out.data is None:
        raise invalid_response("the inference reply's output has no JSON data")
    return np.asarray(out.data).reshape(out.shape)


def _message(message: ChatMessage | Mapping[str, Any]) -> Any:
    return message.model_dump() if isinstance(message, BaseModel) else dict(message)


class AsyncChatStream:
    """The text deltas of a streamed chat completion: ``async for delta in stream``.

    After the last delta, `finish_reason` and `usage` are set and `text` is the whole answer.
    The reply is closed at its end, on an error, or by `aclose` (``async with`` closes it).
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._events = sse_data(response.aiter_bytes())
        self._parts: list[str] = []
        self._closed = False
        self.id: str | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.usage: CompletionUsage | None = None

    @property
    def text(self) -> str:
        """The answer so far (all of it once the stream has ended)."""
        return "".join(self._parts)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        try:
            while not self._closed:
                try:
                    data = await anext(self._events)
                except StopAsyncIteration:
                    if self.finish_reason is None:  # the server went away mid-answer
                        raise invalid_response("the stream ended before the answer did") from None
                    break
                if data == "[DONE]":
                    break
                delta = self._read(data)
                if delta:
                    self._parts.append(delta)
                    return delta
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise StopAsyncIteration

    def _read(self, data: str) -> str:
        try:
            payload = json.loads(data)
        except ValueError:
            raise invalid_response("the stream carried an event that is not JSON") from None
        if isinstance(payload, dict) and "error" in payload:
            raise error_from_payload(payload)
        try:
            chunk = ChatCompletionChunk.model_validate(payload)
        except ValidationError:
            raise invalid_response("the stream carried a malformed chunk") from None
        self.id, self.model = chunk.id, chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        text = []
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
            if choice.delta.content:
                text.append(choice.delta.content)
        return "".join(text)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._events.aclose()
            await self._response.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncClient(HttpClient):
    """Plaintext REST client (async). ``async with AsyncClient(url, key) as client: ...``

    Args:
        base_url: the service, e.g. ``https://aiaas.example``.
        api_key: sent as ``Authorization: Bearer``; never put it in a URL.
        timeout: seconds per request (connect, read, write, pool each).
        transport: an httpx transport (tests, proxies, custom TLS).
        retry: bounded retries of 429/503 replies (`RetryPolicy`; ``NO_RETRY`` turns them off).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._http = Http(base_url, api_key, timeout=timeout, transport=transport, retry=retry)
        self._input_names: dict[str, str] = {}

    # ------------------------------------------------------------------ identity, models
    async def whoami(self) -> dict[str, Any]:
        """Who the API key is: tenant, trust, subject, roles (``GET /v1/whoami``)."""
        return (await self._http.get("/v1/whoami", WhoAmI)).model_dump(mode="json")

    async def models(self) -> ModelList:
        """The models this key may use for plaintext inference (``GET /v1/models``)."""
        return await self._http.get("/v1/models", ModelList)

    async def metadata(self, model: str) -> dict[str, Any]:
        """The model's v2 metadata: versions, input and output names, shapes, datatypes."""
        found = await self._http.get(f"/v2/models/{model_name(model)}", V2ModelMetadata)
        return found.model_dump(mode="json")

    # ------------------------------------------------------------------ inference
    async def infer(
        self, model: str, inputs: Any, *, input_name: str | None = None,
        output: str | None = None,
    ) -> np.ndarray:  # fmt: skip
        """One output of the model (default: its first, e.g. logits) for a batch of rows."""
        if input_name is None:
            if model not in self._input_names:
                self._input_names[model] = (await self.metadata(model))["inputs"][0]["name"]
            input_name = self._input_names[model]
        body = _v2_request(inputs, input_name)
        return _v2_output(await self._http.post(f"/v2/models/{model_name(model)}/infer", body,
                                                V2InferResponse), output)  # fmt: skip

    async def embeddings(self, texts: str | Sequence[str], model: str) -> list[list[float]]:
        """One vector per text, in order (``POST /v1/embeddings``; texts are scrubbed first)."""
        given = texts if isinstance(texts, str) else list(texts)
        body = _request(EmbeddingsRequest, {"model": model, "input": given})
        reply = await self._http.post("/v1/embeddings", body, EmbeddingsResponse)
        vectors = []
        for item in sorted(reply.data, key=lambda d: d.index):
            if isinstance(item.embedding, str):  # base64 little-endian float32
                raw = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
                vectors.append([float(v) for v in raw])
            else:
                vectors.append(item.embedding)
        return vectors

    # ------------------------------------------------------------------ chat
    @overload
    async def chat(
        self, model: str, messages: Sequence[ChatMessage | Mapping[str, Any]], *,
        stream: Literal[False] = False, max_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> ChatCompletionResponse: ...  # fmt: skip

    @overload
    async def chat(
        self, model: str, messages: Sequence[ChatMessage | Mapping[str, Any]], *,
        stream: Literal[True], max_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> AsyncChatStream: ...  # fmt: skip

    async def chat(
        self, model: str, messages: Sequence[ChatMessage | Mapping[str, Any]], *,
        stream: bool = False, max_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> ChatCompletionResponse | AsyncChatStream:  # fmt: skip
        """A chat completion (``POST /v1/chat/completions``, OpenAI's shape).

        Messages are ``{"role": "system" | "developer" | "user" | "assistant", "content"}``
        (or `schemas.ChatMessage`). Without `stream`, returns the whole completion
        (``.text``, ``.finish_reason``, ``.usage``). With ``stream=True``, returns an
        `AsyncChatStream` of text deltas once the service has accepted the request (errors
        such as 401, 422 or 429 are raised here, not while iterating).
        """
        fields: dict[str, Any] = {"model": model, "messages": [_message(m) for m in messages]}
        given = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "stop": stop if isinstance(stop, str | None) else list(stop),
        }
        fields.update({k: v for k, v in given.items() if v is not None})
        if stream:
            fields.update(stream=True, stream_options={"include_usage": True})
        body = _request(ChatCompletionRequest, fields)
        if not stream:
            return await self._http.post("/v1/chat/completions", body, ChatCompletionResponse)
        response = await self._http.send("POST", "/v1/chat/completions", body=body, stream=True)
        if not response.headers.get("content-type", "").startswith(SSE_MEDIA_TYPE):
            await response.aclose()
            raise invalid_response("a streamed completion did not come as server-sent events")
        return AsyncChatStream(response)

    # ------------------------------------------------------------------ privacy
    async def scrub(self, text: str | Sequence[str], *, model: str | None = None) -> ScrubResponse:
        """Personal data in `text` (one or several texts) replaced by placeholders.

        Several texts are one request: the same value gets the same placeholder in each.
        The reply holds the scrubbed texts and what was found (type, offsets, score; never
        the values).
        """
        fields: dict[str, Any] = {"text": text} if isinstance(text, str) else {"texts": list(text)}
        if model is not None:
            fields["model"] = model
        return await self._http.post("/v1/privacy/scrub", _request(ScrubRequest, fields),
                                     ScrubResponse)  # fmt: skip

    async def scrub_json(self, value: JsonValue, *, model: str | None = None) -> ScrubResponse:
        """A JSON value scrubbed field by field, keys and numbers included (``.json_value``)."""
        fields: dict[str, Any] = {"json": value}
        if model is not None:
            fields["model"] = model
        return await self._http.post("/v1/privacy/scrub", _request(ScrubRequest, fields),
                                     ScrubResponse)  # fmt: skip

    # ------------------------------------------------------------------ audit
    async def audit_events(
        self, *, tenant: str | None = None, subject: str | None = None,
        action: str | None = None, decision: AuditDecision | None = None,
        model: str | None = None, status: int | None = None, since: str | None = None,
        until: str | None = None, cursor: str | None = None, limit: int = 100,
    ) -> AuditEventsPage:  # fmt: skip
        """One page of audit records, oldest first; pass ``next_cursor`` on for the next."""
        return await self._http.get(
            "/v1/audit/events", AuditEventsPage, tenant=tenant, subject=subject, action=action,
            decision=decision, model=model, status=status, since=since, until=until,
            cursor=cursor, limit=limit,
        )  # fmt: skip

    async def audit_export(
        self, destination: str | Path, *, since: str | None = None, until: str | None = None,
        tenant: str | None = None, format: Literal["jsonl", "csv"] = "jsonl",
    ) -> str:  # fmt: skip
        """Write a signed export (a .tar.gz: records, manifest, signature) to `destination`.

        Returns the manifest's SHA-256 as the service reported it; check the archive offline
        with ``secure-aiaas audit verify``. The file appears only once complete.
        """
        fields = {"since": since, "until": until, "tenant": tenant, "format": format}
        body = _request(ExportRequest, {k: v for k, v in fields.items() if v is not None})
        target = Path(destination)
        partial = target.with_name(target.name + ".part")
        response = await self._http.send("POST", "/v1/audit/exports", body=body, stream=True)
        try:
            async with await anyio.open_file(partial, "wb") as out:
                async for chunk in response.aiter_bytes():
                    await out.write(chunk)
            partial.replace(target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        finally:
            await response.aclose()
        return str(response.headers.get("x-manifest-sha256", ""))

    async def audit_public_key(self) -> PublicKeys:
        """The audit signing key's public half (and retired ones), for offline verification."""
        return await self._http.get("/v1/audit/public-key", PublicKeys)
