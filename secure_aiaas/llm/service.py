"""The seam between the HTTP routes and the engine: already-scrubbed text in, wire bodies out.

The routes authenticate, authorize (``llm:<name>`` / ``generate``), scrub, check quotas and
audit; everything after that is here. A request goes through three calls::

    service = chat_pool.get(body.model)                        # NotFoundError
    texts = await scrub(body.message_texts())                  # one batch: placeholders agree
    prompt = await asyncio.to_thread(service.prepare_chat, body, texts)  # tokenizes: off the loop
    #   quotas: prompt.prompt_tokens now, prompt.max_tokens at most later
    generation = service.submit(prompt, restore=mapping_or_None, priority=...)  # 503 if full
    await generation.admitted()                                # a remote engine's 503 here
    if body.stream:
        return StreamingResponse(generation.sse(), media_type=SSE_MEDIA_TYPE)
    return await generation.body()
    # afterwards, in every case: generation.outcome (tokens, finish reason, restored counts)

`prepare_chat` reads only the roles from the request, never its message contents: the model
sees exactly the texts it is handed. ``restore`` (a `PlaceholderMap` from this request's
scrubbing) puts the original values back into the answer, streamed or not; pass None for a
tenant whose profile does not ask for it. `Outcome` carries counts only, never text, so it is
what an audit record or a quota may take.

A streamed generation whose consumer goes away (client disconnect: the response task is
cancelled) frees its batch slot at the next engine step and ends with
``outcome.finish_reason == "cancelled"``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from secure_aiaas.errors import InferenceError, ServiceError
from secure_aiaas.llm import wire
from secure_aiaas.llm.config import DEFAULT_MAX_TOKENS, EngineConfig
from secure_aiaas.llm.engine import (
    EngineFinish,
    EngineObserver,
    Event,
    Finished,
    LLMEngine,
    TokenDelta,
)
from secure_aiaas.llm.restore import PlaceholderMap, Restorer
from secure_aiaas.llm.sampling import SamplingParams

if TYPE_CHECKING:
    import torch

    from secure_aiaas.inference.registry import ModelRegistry
    from secure_aiaas.llm.model import LoadedModel

logger = logging.getLogger(__name__)


class EventStream(Protocol):
    """What a `Generation` reads: an `LLMEngine`'s `GenerationStream`, or the stream of an
    engine in another process (the Ray engine's chat deployment)."""

    @property
    def completion_tokens(self) -> int: ...

    @property
    def time_to_first_token_s(self) -> float | None: ...

    @property
    def elapsed_s(self) -> float: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    def cancel(self) -> None: ...

    async def admitted(self) -> None:
        """Return once the engine has queued the request; its refusal raises here."""


class Engine(Protocol):
    """What an `LLMService` drives (an `LLMEngine`, or a stand-in for a remote one)."""

    @property
    def context_limit(self) -> int: ...

    def submit(
        self, prompt_ids: Sequence[int], params: SamplingParams, *, priority: int | None = None
    ) -> EventStream: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class PreparedPrompt:
    """A request turned into token ids and sampling parameters (no text kept)."""

    kind: Literal["chat", "completion"]
    model: str
    prompt_ids: tuple[int, ...] = field(repr=False)
    params: SamplingParams = field(repr=False)
    include_usage: bool = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def max_tokens(self) -> int:
        return self.params.max_tokens


@dataclass(frozen=True)
class Outcome:
    """What happened to one generation: counts for audit records, quotas and metrics."""

    model_id: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: EngineFinish
    time_to_first_token_s: float | None
    duration_s: float
    restored: dict[str, int]  # placeholders put back, by entity type
    error_code: str | None = None


class Generation:
    """One submitted request; consume it once, with `body` or `sse`."""

    def __init__(self, service: LLMService, prompt: PreparedPrompt, stream: EventStream,
                 restorer: Restorer | None, request_id: str | None) -> None:  # fmt: skip
        self._service = service
        self._prompt = prompt
        self._stream = stream
        self._restorer = restorer
        self.id = request_id or wire.new_id("chatcmpl" if prompt.kind == "chat" else "cmpl")
        self.created = wire.now()
        self.outcome: Outcome | None = None

    @property
    def prompt_tokens(self) -> int:
        return self._prompt.prompt_tokens

    def cancel(self) -> None:
        self._stream.cancel()

    async def admitted(self) -> None:
        """Return once the engine holds the request (`OverloadedError` if it refused it)."""
        await self._stream.admitted()

    async def body(self) -> dict[str, Any]:
        """The non-streamed response body.

        Raises:
            ServiceError: the engine failed (InferenceError) or is shutting down (Overloaded).
        """
        parts: list[str] = []
        finished: Finished | None = None
        try:
            async for event in self._stream:
                if isinstance(event, TokenDelta):
                    parts.append(event.text)
                else:
                    finished = event
            if finished is None:
                raise InferenceError()
            if finished.error is not None:
                raise finished.error
            text = "".join(parts)
            if self._restorer is not None:
                text = self._restorer.restore(text)
            return self._body(text, finished)
        finally:
            self._settle(finished)

    async def sse(self) -> AsyncIterator[str]:
        """Server-sent events: chunks, a final chunk, usage (if asked), ``data: [DONE]``."""
        restorer = self._restorer.stream() if self._restorer is not None else None
        finished: Finished | None = None
        try:
            if self._prompt.kind == "chat":
                yield wire.sse(self._chunk({"role": "assistant", "content": ""}))
            async for event in self._stream:
                if isinstance(event, TokenDelta):
                    text = restorer.push(event.text) if restorer is not None else event.text
                    if text:
                        yield wire.sse(self._chunk({"content": text}))
                    continue
                finished = event
                if event.error is not None:
                    yield wire.sse_error(event.error, status=_stream_status(event.error))
                    yield wire.SSE_DONE
                    return
                tail = restorer.flush() if restorer is not None else ""
                if tail:
                    yield wire.sse(self._chunk({"content": tail}))
                self._settle(event)  # known before the last events: the caller records it
                yield wire.sse(self._chunk({}, _wire_finish(event.finish_reason)))
                if self._prompt.include_usage:
                    yield wire.sse(self._usage(event))
                yield wire.SSE_DONE
        finally:
            self._stream.cancel()  # no-op when finished; frees the slot on a disconnect
            if self.outcome is None:
                self._settle(finished)

    # -- building ----------------------------------------------------------------------

    def _fingerprint(self) -> str:
        return self._service.model_id

    def _chunk(
        self, delta: dict[str, str], finish: wire.FinishReason | None = None
    ) -> dict[str, Any]:
        if self._prompt.kind == "chat":
            return wire.chat_chunk(id=self.id, created=self.created, model=self._prompt.model,
                                   fingerprint=self._fingerprint(), delta=delta,
                                   finish_reason=finish)  # fmt: skip
        return wire.completion_chunk(id=self.id, created=self.created, model=self._prompt.model,
                                     fingerprint=self._fingerprint(),
                                     text=delta.get("content", ""), finish_reason=finish)  # fmt: skip

    def _usage(self, finished: Finished) -> dict[str, Any]:
        return wire.usage_chunk(
            id=self.id, created=self.created, model=self._prompt.model,
            fingerprint=self._fingerprint(),
            object="chat.completion.chunk" if self._prompt.kind == "chat" else "text_completion",
            prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens,
        )  # fmt: skip

    def _body(self, text: str, finished: Finished) -> dict[str, Any]:
        builder = wire.chat_completion_body if self._prompt.kind == "chat" else wire.completion_body
        return builder(id=self.id, created=self.created, model=self._prompt.model,
                       fingerprint=self._fingerprint(), text=text,
                       finish_reason=_wire_finish(finished.finish_reason),
                       prompt_tokens=finished.prompt_tokens,
                       completion_tokens=finished.completion_tokens)  # fmt: skip

    def _settle(self, finished: Finished | None) -> None:
        restored = dict(self._restorer.counts) if self._restorer is not None else {}
        if finished is None:  # left before the end: the consumer went away
            self.outcome = Outcome(self._service.model_id, self._prompt.prompt_tokens,
                                   self._stream.completion_tokens, "cancelled",
                                   self._stream.time_to_first_token_s, self._stream.elapsed_s,
                                   restored)  # fmt: skip
            return
        self.outcome = Outcome(
            self._service.model_id, finished.prompt_tokens, finished.completion_tokens,
            finished.finish_reason, finished.time_to_first_token_s, finished.duration_s, restored,
            finished.error.code if finished.error is not None else None,
        )  # fmt: skip


def _wire_finish(reason: EngineFinish) -> wire.FinishReason:
    return "length" if reason == "length" else "stop"


def _stream_status(error: ServiceError) -> int:
    from secure_aiaas.errors import OverloadedError

    return 503 if isinstance(error, OverloadedError) else 500


class LLMService:
    """One served chat model: its tokenizer and chat template, and its engine."""

    def __init__(self, loaded: LoadedModel, engine: Engine, *,
                 default_max_tokens: int = DEFAULT_MAX_TOKENS) -> None:  # fmt: skip
        self.loaded = loaded
        self.engine = engine
        self.default_max_tokens = default_max_tokens
        self.name = loaded.manifest.name
        self.version = loaded.manifest.version
        self.model_id = loaded.manifest.id

    @classmethod
    def load(
        cls,
        registry: ModelRegistry,
        name: str,
        version: str | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | None = None,
        config: EngineConfig | None = None,
        observer: EngineObserver | None = None,
        priority_of: Callable[[], int] | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> LLMService:
        """Verify, load and wrap a registered chat model (blocking: call it in a thread)."""
        from secure_aiaas.llm.registry import load_causal_lm

        loaded = load_causal_lm(registry, name, version, device=device, dtype=dtype)
        engine = LLMEngine(loaded.model, decode=loaded.decode, eos_token_ids=loaded.eos_token_ids,
                           context_limit=loaded.context_limit, config=config, observer=observer,
                           priority_of=priority_of, name=loaded.manifest.name)  # fmt: skip
        return cls(loaded, engine, default_max_tokens=default_max_tokens)

    @property
    def context_limit(self) -> int:
        return self.engine.context_limit

    def card(self) -> dict[str, Any]:
        """This model's ``GET /v1/models`` entry."""
        manifest = self.loaded.manifest
        return wire.model_card(self.name, self.version, int(manifest.created_at.timestamp()))

    # -- preparing ---------------------------------------------------------------------

    def prepare_chat(
        self, request: wire.ChatCompletionRequest, texts: Sequence[str]
    ) -> PreparedPrompt:
        """Token ids for the conversation, with each message's content replaced by `texts`.

        Args:
            request: the validated body (its message contents are not read).
            texts: the scrubbed text of each message, in order.

        Raises:
            InputError: texts that do not match the messages, a conversation the chat
                template refuses, a model without a chat template, prompt + max_tokens
                beyond the context (`ContextLengthError`).
        """
        from secure_aiaas.errors import InputError

        if len(texts) != len(request.messages):
            raise InputError("one scrubbed text per message is needed")
        ids = self.loaded.encode_chat([(m.role, t) for m, t in zip(request.messages, texts)])
        return self._prepared("chat", request, ids, request.token_limit())

    def prepare_completion(self, request: wire.CompletionRequest, text: str) -> PreparedPrompt:
        """Token ids for the (scrubbed) prompt text; raises like `prepare_chat`."""
        return self._prepared("completion", request, self.loaded.encode_text(text),
                              request.max_tokens)  # fmt: skip

    def _prepared(self, kind: Literal["chat", "completion"], request: wire.Sampling,
                  ids: list[int], max_tokens: int | None) -> PreparedPrompt:  # fmt: skip
        from secure_aiaas.errors import ContextLengthError

        room = self.context_limit - len(ids)
        if room < 1:
            raise ContextLengthError(
                f"the prompt ({len(ids)} tokens) fills the context length of "
                f"{self.context_limit} tokens"
            )
        limit = max_tokens if max_tokens is not None else min(self.default_max_tokens, room)
        params = SamplingParams(
            max_tokens=limit,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed, stop=request.stop_sequences(),
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
        )  # fmt: skip
        if len(ids) + limit > self.context_limit:
            raise ContextLengthError(
                f"prompt ({len(ids)} tokens) + max_tokens ({limit}) exceeds the context length "
                f"of {self.context_limit} tokens"
            )
        return PreparedPrompt(kind, request.model, tuple(ids), params, request.include_usage())

    # -- generating --------------------------------------------------------------------

    def submit(
        self,
        prompt: PreparedPrompt,
        *,
        restore: PlaceholderMap | None = None,
        priority: int | None = None,
        request_id: str | None = None,
    ) -> Generation:
        """Queue the generation (call from the event loop).

        Raises:
            OverloadedError: the engine's queue is full or it is not running (503).
        """
        stream = self.engine.submit(prompt.prompt_ids, prompt.params, priority=priority)
        restorer = Restorer(restore) if restore is not None and len(restore) else None
        return Generation(self, prompt, stream, restorer, request_id)

    def start(self) -> None:
        self.engine.start()

    async def close(self) -> None:
        await self.engine.close()
