"""Chat models in deployments of their own, one per chat model, events streamed back.

The ingress keeps everything about a chat request but the generation: authentication,
policy, scrubbing, the prompt (tokenizer and chat template, from the replica's copy of the
model without its weights), quotas, the OpenAI wire format and SSE, restoring placeholders,
the audit records. Only `LLMEngine.submit` moves: the ingress's `RemoteEngine` calls its
model's `ChatReplica`s with a streaming handle, and each replica's engine batches the
sequences of every ingress replica continuously. A consumer that goes away cancels the
remote call, which cancels the replica's stream and frees its batch slot.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ray import serve
from ray.exceptions import RayTaskError

from secure_aiaas.config import Settings
from secure_aiaas.errors import ServiceError
from secure_aiaas.llm.engine import EngineObserver, Event, Finished, LLMEngine, TokenDelta
from secure_aiaas.llm.pool import ChatModelPool
from secure_aiaas.llm.sampling import SamplingParams
from secure_aiaas.llm.service import LLMService

if TYPE_CHECKING:
    from secure_aiaas.llm.engine import EngineStats
    from secure_aiaas.llm.model import LoadedModel

logger = logging.getLogger(__name__)
# The first item of every stream: the replica's engine queued the request.
ADMITTED = "admitted"


class ChatReplica:
    """One replica of one chat model: its `LLMService` (weights, engine thread)."""

    async def __init__(  # type: ignore[misc]  # Serve awaits it
        self, settings: Settings, name: str, version: str | None
    ) -> None:
        import asyncio

        from secure_aiaas.api.app import chat_engine_config
        from secure_aiaas.inference import ModelRegistry
        from secure_aiaas.logging import configure_logging

        configure_logging(settings.log.level, json_logs=settings.log.json_logs)
        cfg = settings.llm
        self._service = await asyncio.to_thread(
            LLMService.load,
            ModelRegistry(settings.resolved_models_dir()),
            name,
            version,
            device=None if cfg.device == "auto" else cfg.device,
            dtype=None if cfg.dtype == "auto" else cfg.dtype,
            config=chat_engine_config(settings),
            default_max_tokens=cfg.default_max_tokens,
        )
        engine = self._service.engine
        if not isinstance(engine, LLMEngine):
            raise TypeError("a chat replica runs a local engine")
        self._engine = engine
        self._service.start()

    def describe(self) -> tuple[LoadedModel, int]:
        """The model as the ingress needs it (tokenizer, template, manifest; no weights)
        and the engine's context limit."""
        return dataclasses.replace(self._service.loaded, model=None), self._service.context_limit

    async def generate(
        self, prompt_ids: Sequence[int], params: SamplingParams, priority: int | None
    ) -> AsyncIterator[Event | str]:
        """`ADMITTED`, then the engine's events for one request (`TokenDelta`…, `Finished`).

        Raises:
            ServiceError: the engine refused the request (full queue, not serving).
        """
        stream = self._engine.submit(prompt_ids, params, priority=priority)
        try:
            yield ADMITTED
            async for event in stream:
                yield event
        finally:
            stream.cancel()  # a no-op once finished; the caller's cancel lands here

    def stats(self) -> EngineStats:
        """This replica's engine figures (sequences generating, waiting, tokens so far)."""
        return self._engine.stats()

    async def __del__(self) -> None:
        await self._service.close()


class RemoteStream:
    """A `Generation`'s event stream from a chat replica (the `EventStream` protocol)."""

    def __init__(self, response: Any, prompt_tokens: int, observer: EngineObserver | None) -> None:
        self._response = response
        self._observer = observer
        self.prompt_tokens = prompt_tokens
        self._submitted = time.perf_counter()
        self._first_token_at: float | None = None
        self._completion_tokens = 0
        self._admitted = False
        self._done = False

    @property
    def completion_tokens(self) -> int:
        return self._completion_tokens

    @property
    def time_to_first_token_s(self) -> float | None:
        first = self._first_token_at
        return None if first is None else first - self._submitted

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._submitted

    async def admitted(self) -> None:
        """Wait for the replica's engine to queue the request.

        Raises:
            ServiceError: its refusal (503 on a full queue), as a local engine raises it.
        """
        if not self._admitted:
            marker = await self._next()
            if marker != ADMITTED:
                raise RuntimeError("a chat stream must open with its admission")
            self._admitted = True

    def __aiter__(self) -> RemoteStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        await self.admitted()
        event = await self._next()
        if isinstance(event, str):
            raise RuntimeError("a chat stream admits a request once")
        if isinstance(event, TokenDelta):
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
                if self._observer is not None:
                    self._observer.on_first_token(self._first_token_at - self._submitted)
            self._completion_tokens = event.completion_tokens
        elif isinstance(event, Finished):
            self._done = True
            self._completion_tokens = event.completion_tokens
            if self._observer is not None:
                self._observer.on_finish(event)
        return event

    async def _next(self) -> Event | str:
        try:
            item: Event | str = await self._response.__anext__()
            return item
        except RayTaskError as exc:
            self._done = True
            if isinstance(exc.cause, ServiceError):
                raise exc.cause from None
            raise
        except BaseException:
            self.cancel()  # the consumer went away (task cancelled): the replica stops too
            raise

    def cancel(self) -> None:
        """Stop the remote generation (idempotent; its slot is freed at the next step)."""
        if not self._done:
            self._done = True
            self._response.cancel()


class RemoteEngine:
    """The ingress's engine for a remote chat model (the `Engine` protocol)."""

    def __init__(
        self, model: Any, context_limit: int, observer: EngineObserver | None = None
    ) -> None:
        self._streaming = model.options(stream=True)
        self.context_limit = context_limit
        self._observer = observer

    def submit(
        self, prompt_ids: Sequence[int], params: SamplingParams, *, priority: int | None = None
    ) -> RemoteStream:
        """Start the remote generation; its admission (or refusal) arrives first."""
        response = self._streaming.generate.remote(tuple(prompt_ids), params, priority)
        return RemoteStream(response, len(prompt_ids), self._observer)

    def start(self) -> None:
        """Nothing to start here: the replicas run their engines."""

    async def close(self) -> None:
        """Nothing to stop here: streams in flight end with their replicas."""


class RemoteChatModelPool(ChatModelPool):
    """The ingress's chat pool: tokenizers and templates here, generation in the chat
    deployments.

    Args:
        models_by_name: a handle to each chat model's deployment, by model name.
        kwargs: `ChatModelPool`'s arguments.
    """

    def __init__(self, *args: Any, models_by_name: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remote = dict(models_by_name)

    async def start(self) -> None:
        """Fetch each model's tokenizer and template from its deployment; nothing loads
        weights here (a model that failed to load failed its deployment, and the app)."""
        for name, model in self._remote.items():
            loaded, context_limit = await model.describe.remote()
            observer = self._observer_for(name) if self._observer_for is not None else None
            engine = RemoteEngine(model, context_limit, observer)
            service = LLMService(
                loaded, engine, default_max_tokens=self._options["default_max_tokens"]
            )
            self._publish(service)
            logger.info("llm.model_remote model=%s", service.model_id)


ChatDeployment: Any = serve.deployment(ChatReplica)
