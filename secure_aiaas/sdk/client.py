"""The sync clients: `Client` and `EncryptedClient`, thin wrappers of the async core.

Each method runs the same-named method of `AsyncClient` / `AsyncEncryptedClient` on the SDK's
event-loop thread (`_portal`) and waits: no request is built here, so the sync and async APIs
behave alike by construction. They work where an event loop is already running (Jupyter,
async frameworks); inside async code, prefer the async clients, which do not block the loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, Self, TypeVar, overload

import httpx

from secure_aiaas.schemas import ChatCompletionResponse, ChatMessage, CompletionUsage
from secure_aiaas.sdk._http import RetryPolicy, async_transport
from secure_aiaas.sdk._portal import blocking, run
from secure_aiaas.sdk.encrypted import AsyncEncryptedClient, _EncryptedBase
from secure_aiaas.sdk.plaintext import DEFAULT_RETRY, AsyncChatStream, AsyncClient, _v2_body

# `_EncryptedBase` and `_v2_body` are imported from here by benchmarks and tests.
__all__ = ["AsyncEncryptedClient", "ChatStream", "Client", "EncryptedClient",
           "_EncryptedBase", "_v2_body"]  # fmt: skip

Transport = httpx.BaseTransport | httpx.AsyncBaseTransport


class _AsyncClosable(Protocol):
    async def aclose(self) -> None: ...


Core = TypeVar("Core", bound=_AsyncClosable)


class _Closing(Generic[Core]):
    """A sync wrapper of something async with ``aclose`` (``self._core``): ``close`` and
    ``with`` run it on the SDK's loop."""

    _core: Core

    def close(self) -> None:
        run(self._core.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _next_delta(stream: AsyncChatStream) -> str | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


class ChatStream(_Closing[AsyncChatStream]):
    """The text deltas of a streamed chat completion: ``for delta in stream`` (sync).

    `finish_reason`, `usage` and `text` as on `AsyncChatStream`; ``with`` closes the reply
    when the loop is left early.
    """

    def __init__(self, stream: AsyncChatStream) -> None:
        self._core = stream

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        delta = run(_next_delta(self._core))
        if delta is None:
            raise StopIteration
        return delta

    @property
    def text(self) -> str:
        return self._core.text

    @property
    def finish_reason(self) -> str | None:
        return self._core.finish_reason

    @property
    def usage(self) -> CompletionUsage | None:
        return self._core.usage


class Client(_Closing[AsyncClient]):
    """Plaintext REST client: KServe v2 inference, OpenAI-style embeddings and chat,
    scrubbing, the audit trail. Arguments and methods as `AsyncClient`'s, without ``await``;
    `transport` may be a sync or an async httpx transport."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: Transport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._core = AsyncClient(base_url, api_key, timeout=timeout,
                                 transport=async_transport(transport), retry=retry)  # fmt: skip

    whoami = blocking(AsyncClient.whoami)
    models = blocking(AsyncClient.models)
    metadata = blocking(AsyncClient.metadata)
    infer = blocking(AsyncClient.infer)
    embeddings = blocking(AsyncClient.embeddings)
    scrub = blocking(AsyncClient.scrub)
    scrub_json = blocking(AsyncClient.scrub_json)
    audit_events = blocking(AsyncClient.audit_events)
    audit_export = blocking(AsyncClient.audit_export)
    audit_public_key = blocking(AsyncClient.audit_public_key)

    @overload
    def chat(
        self, model: str, messages: Sequence[ChatMessage | Mapping[str, Any]], *,
        stream: Literal[False] = False, max_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> ChatCompletionResponse: ...  # fmt: skip

    @overload
    def chat(
        self, model: str, messages: Sequence[ChatMessage | Mapping[str, Any]], *,
        stream: Literal[True], max_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> ChatStream: ...  # fmt: skip

    def chat(
        self, model: str, messages: Sequence[ChatMessage | Mapping[str, Any]], *,
        stream: bool = False, **sampling: Any,
    ) -> ChatCompletionResponse | ChatStream:  # fmt: skip
        """`AsyncClient.chat`; with ``stream=True`` an iterator of text deltas (`ChatStream`)."""
        if stream:
            return ChatStream(run(self._core.chat(model, messages, stream=True, **sampling)))
        return run(self._core.chat(model, messages, stream=False, **sampling))


class EncryptedClient(_Closing[AsyncEncryptedClient]):
    """`EncryptedClient(url, key).predict("digits-mlp", x)`: encrypted inference, sync.

    `predict` returns the decrypted model outputs (logits; for a "logit" plan apply the
    sigmoid, e.g. with `predict_proba`). With `key_dir` and `passphrase` the secret context
    is saved encrypted and reused across runs. Arguments and methods as
    `AsyncEncryptedClient`'s, without ``await``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        key_dir: str | Path | None = None,
        passphrase: str | None = None,
        timeout: float = 60.0,
        transport: Transport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._core = AsyncEncryptedClient(
            base_url, api_key, key_dir=key_dir, passphrase=passphrase, timeout=timeout,
            transport=async_transport(transport), retry=retry,
        )  # fmt: skip

    plan = blocking(AsyncEncryptedClient.plan)
    session = blocking(AsyncEncryptedClient.session)
    predict = blocking(AsyncEncryptedClient.predict)
    predict_proba = blocking(AsyncEncryptedClient.predict_proba)
    forget = blocking(AsyncEncryptedClient.forget)
