"""Continuous batching for one causal language model, in a thread of its own.

The engine thread loops over decoding steps. Between two steps it retires finished and
cancelled sequences and admits waiting ones, highest priority first (arrival order within a
priority), as long as the batch has room. A newcomer's prompt is prefilled alone (exact: no
padding in its own attention), then its KV cache joins the batch's, left-padded to a common
length; each step then feeds every sequence its last token at once under an attention mask.
Nothing here runs on the event loop: `submit` only queues, and events come back to the
caller's loop through ``call_soon_threadsafe``.

Why not transformers' own continuous batching (``model.init_continuous_batching``)? It runs on
CPU and batches well, but drops the repetition penalty (unsupported there), shares one random
stream between all requests (no per-request seed), and schedules first-in first-out only.

Bounds: ``prompt + max_tokens <= context_limit`` (`ContextLengthError` otherwise); at most
``max_batch_size`` sequences decode together; at most ``max_queue_size`` wait (then
`OverloadedError`, a 503 with Retry-After); at most ``max_prefill_tokens`` of newcomers'
prompts are prefilled between two steps (at least one newcomer), so a burst of long prompts
delays the running streams by a bounded amount. Priority orders admission; a running
sequence is never preempted.

Usage::

    engine = LLMEngine(model, decode=..., eos_token_ids=..., config=EngineConfig(...))
    engine.start()
    async with engine.submit(prompt_ids, SamplingParams(max_tokens=64)) as stream:
        async for event in stream:       # TokenDelta ..., then one Finished
            ...
    await engine.close()
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
import torch.nn.functional as F

from secure_aiaas.errors import (
    ContextLengthError,
    InferenceError,
    InputError,
    OverloadedError,
    ServiceError,
)
from secure_aiaas.llm.config import EngineConfig
from secure_aiaas.llm.sampling import RowSampler, SamplingParams, apply_penalties, choose
from secure_aiaas.llm.text import Decode, IncrementalDetokenizer, StopMatcher

if TYPE_CHECKING:
    from transformers import DynamicCache

logger = logging.getLogger(__name__)
EngineFinish = Literal["stop", "length", "cancelled", "error"]


# -- what callers see ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """New answer text (possibly empty of text when a stop sequence or character is pending)."""

    text: str
    completion_tokens: int  # generated so far


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of a stream."""

    finish_reason: EngineFinish
    prompt_tokens: int
    completion_tokens: int
    queued_s: float  # submit -> admitted into the batch
    time_to_first_token_s: float | None  # submit -> first token (None if none came)
    duration_s: float  # submit -> finish
    error: ServiceError | None = None  # set when finish_reason == "error"


Event = TokenDelta | Finished


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One engine step, for metrics (no payload by construction)."""

    batch_size: int  # sequences decoded in this step
    queue_depth: int  # still waiting after admission
    admitted: int
    prefill_tokens: int
    new_tokens: int
    seconds: float


class EngineObserver(Protocol):
    """Metrics hooks: quick and thread-safe (the engine thread calls them; `on_finish` also
    comes from the caller's thread for a request cancelled while still queued)."""

    def on_step(self, record: StepRecord) -> None: ...
    def on_first_token(self, seconds: float) -> None: ...
    def on_token_gap(self, seconds: float) -> None: ...
    def on_finish(self, event: Finished) -> None: ...


class NullObserver:
    def on_step(self, record: StepRecord) -> None:
        pass

    def on_first_token(self, seconds: float) -> None:
        pass

    def on_token_gap(self, seconds: float) -> None:
        pass

    def on_finish(self, event: Finished) -> None:
        pass


@dataclass(frozen=True)
class EngineStats:
    active: int
    waiting: int
    max_batch_size: int
    max_queue_size: int
    context_limit: int
    steps_total: int
    tokens_total: int
    rejected_total: int


# -- one sequence --------------------------------------------------------------------------


@dataclass(eq=False)
class _Sequence:
    order: int
    prompt: list[int]
    params: SamplingParams
    priority: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event]
    sampler: RowSampler
    detokenizer: IncrementalDetokenizer
    stop: StopMatcher
    submitted: float = field(default_factory=time.perf_counter)
    state: Literal["waiting", "active", "done"] = "waiting"
    cancel_requested: bool = False
    generated: list[int] = field(default_factory=list)
    admitted_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None

    def heap_key(self) -> tuple[int, int]:
        return (-self.priority, self.order)


class GenerationStream:
    """The events of one request: ``async for event in stream`` (or ``async with`` it).

    Leaving early (``break``, an exception, the task being cancelled, `cancel`) frees the
    sequence's batch slot at the next step.
    """

    def __init__(self, engine: LLMEngine, sequence: _Sequence) -> None:
        self._engine = engine
        self._sequence = sequence
        self._done = False
        self.prompt_tokens = len(sequence.prompt)
        self.max_tokens = sequence.params.max_tokens

    @property
    def completion_tokens(self) -> int:
        """Tokens generated so far (read from the engine thread's list: a snapshot)."""
        return len(self._sequence.generated)

    @property
    def time_to_first_token_s(self) -> float | None:
        first = self._sequence.first_token_at
        return None if first is None else first - self._sequence.submitted

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._sequence.submitted

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        try:
            event = await self._sequence.queue.get()
        except BaseException:
            self.cancel()
            raise
        if isinstance(event, Finished):
            self._done = True
        return event

    def cancel(self) -> None:
        """Stop generating (idempotent); a last `Finished` ("cancelled") is still queued."""
        if not self._done:
            self._engine._cancel(self._sequence)

    async def admitted(self) -> None:
        """Queued already: `LLMEngine.submit` raised otherwise."""

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> GenerationStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()


# -- the batch -----------------------------------------------------------------------------


class _Batch:
    """The running sequences with their shared, left-padded KV cache and attention mask.

    The cache object persists across decoding steps (each step appends in place); it is
    rebuilt only when a sequence joins or leaves.
    """

    def __init__(self, vocab_size: int, device: torch.device) -> None:
        self.vocab_size = vocab_size
        self.device = device
        self.sequences: list[_Sequence] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)
        self.counts = torch.zeros((0, vocab_size), dtype=torch.float32, device=device)
        self.next_tokens: list[int] = []

    def __len__(self) -> int:
        return len(self.sequences)

    def join(self, sequence: _Sequence, cache: DynamicCache, first_token: int) -> None:
        """Add one prefilled sequence, padding the shorter side on the left."""
        length = cache.get_seq_length()
        current = self.mask.shape[1]
        width = max(current, length)
        if self.cache is None or not self.sequences:
            self.cache = cache
        else:
            self.cache = _cache([
                (torch.cat([_pad_left(k, width), _pad_left(nk, width)]),
                 torch.cat([_pad_left(v, width), _pad_left(nv, width)]))
                for (k, v, *_), (nk, nv, *_) in zip(self.cache, cache)
            ])  # fmt: skip
        row = torch.ones((1, length), dtype=torch.long, device=self.device)
        self.mask = torch.cat([F.pad(self.mask, (width - current, 0)),
                               F.pad(row, (width - length, 0))])  # fmt: skip
        zeros = torch.zeros((1, self.vocab_size), dtype=torch.float32, device=self.device)
        self.counts = torch.cat([self.counts, zeros])
        self.sequences.append(sequence)
        self.next_tokens.append(first_token)

    def keep(self, rows: list[int]) -> None:
        """Retain only `rows`, then drop leading columns that no remaining row attends to."""
        if len(rows) == len(self.sequences):
            return
        self.sequences = [self.sequences[i] for i in rows]
        self.next_tokens = [self.next_tokens[i] for i in rows]
        if not rows or self.cache is None:
            self.cache, self.mask, self.counts = None, self.mask[:0, :0], self.counts[:0]
            return
        index = torch.tensor(rows, device=self.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0].item()) if used.numel() else mask.shape[1]
        self.mask = mask[:, start:]
        self.cache = _cache([(k.index_select(0, index)[:, :, start:],
                              v.index_select(0, index)[:, :, start:])
                             for k, v, *_ in self.cache])  # fmt: skip
        self.counts = self.counts.index_select(0, index)


def _cache(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - tensor.shape[-2]
    return F.pad(tensor, (0, 0, missing, 0)) if missing else tensor


# -- the engine ----------------------------------------------------------------------------


class LLMEngine:
    """Continuously batched generation for one model (see the module docstring).

    Args:
        model: a transformers causal LM in eval mode, already on its device.
        decode: token ids -> text, special tokens skipped.
        eos_token_ids: ids that end a sequence.
        context_limit: the model's own limit (capped by ``config.max_context_tokens``).
        config: bounds and defaults.
        observer: metrics hooks (called from the engine thread).
        priority_of: the calling request's priority when `submit` is not given one.
        name: for the thread name and log lines.
    """

    def __init__(
        self,
        model: Any,
        *,
        decode: Decode,
        eos_token_ids: Sequence[int],
        context_limit: int,
        config: EngineConfig | None = None,
        observer: EngineObserver | None = None,
        priority_of: Callable[[], int] | None = None,
        name: str = "llm",
    ) -> None:
        self.config = config or EngineConfig()
        self.context_limit = min(context_limit, self.config.max_context_tokens)
        self.name = name
        self._model = model
        self._device: torch.device = next(model.parameters()).device
        self._decode = decode
        self._eos = frozenset(int(t) for t in eos_token_ids)
        self._eos_ids = tuple(sorted(self._eos))
        self._observer: EngineObserver = observer or NullObserver()
        self._priority_of = priority_of
        self._vocab = int(model.get_output_embeddings().weight.shape[0])
        self._lock = threading.Condition()
        self._waiting: list[tuple[tuple[int, int], _Sequence]] = []
        self._waiting_count = 0
        self._orders = itertools.count()
        self._batch = _Batch(self._vocab, self._device)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._steps = 0
        self._tokens = 0
        self._rejected = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._closing = False
            self._thread = threading.Thread(target=self._run, name=f"llm-engine-{self.name}",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    async def close(self) -> None:
        """Refuse new requests, end every queued and running one, stop the thread."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> EngineStats:
        with self._lock:
            waiting = self._waiting_count
        # Finished sequences leave the batch only after the step that finished them, but
        # their callers may already have heard: count what is still generating.
        active = sum(1 for s in tuple(self._batch.sequences) if s.state != "done")
        return EngineStats(active, waiting, self.config.max_batch_size,
                           self.config.max_queue_size, self.context_limit, self._steps,
                           self._tokens, self._rejected)  # fmt: skip

    # -- submitting (event loop side) --------------------------------------------------

    def submit(
        self, prompt_ids: Sequence[int], params: SamplingParams, *, priority: int | None = None
    ) -> GenerationStream:
        """Queue one request; returns its event stream at once (call from the event loop).

        Raises:
            ContextLengthError: prompt + max_tokens beyond the context limit.
            InputError: an empty prompt or an out-of-range parameter.
            OverloadedError: the queue is full, or the engine is not running.
        """
        prompt = [int(t) for t in prompt_ids]
        self._check(prompt, params)
        loop = asyncio.get_running_loop()
        sequence = _Sequence(
            order=next(self._orders), prompt=prompt, params=params,
            priority=int(priority if priority is not None else
                         (self._priority_of() if self._priority_of else 0)),
            loop=loop, queue=asyncio.Queue(),
            sampler=RowSampler.for_request(params, default_repetition=self.config.repetition_penalty,
                                           device=self._device, eos_token_ids=self._eos_ids),
            detokenizer=IncrementalDetokenizer(self._decode), stop=StopMatcher(params.stop),
        )  # fmt: skip
        with self._lock:
            if self._closing or self._thread is None:
                raise OverloadedError("model is not serving", retry_after=self.config.retry_after_s)
            if self._waiting_count >= self.config.max_queue_size:
                self._rejected += 1
                raise OverloadedError(retry_after=self.config.retry_after_s)
            heapq.heappush(self._waiting, (sequence.heap_key(), sequence))
            self._waiting_count += 1
            self._lock.notify()
        return GenerationStream(self, sequence)

    def _check(self, prompt: list[int], params: SamplingParams) -> None:
        if not prompt:
            raise InputError("prompt: must not be empty")
        if params.max_tokens < 1:
            raise InputError("max_tokens: must be at least 1")
        if len(prompt) + params.max_tokens > self.context_limit:
            raise ContextLengthError(
                f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                f"the context length of {self.context_limit} tokens"
            )
        if not (0.0 <= params.temperature <= 2.0) or not (0.0 < params.top_p <= 1.0):
            raise InputError("temperature must be in [0, 2] and top_p in (0, 1]")
        if params.repetition_penalty is not None and not 0.5 <= params.repetition_penalty <= 2:
            raise InputError("repetition_penalty: must be in [0.5, 2]")
        if any(not 0 <= t < self._vocab for t in prompt):
            raise InputError("prompt: token id out of the model's vocabulary")

    def _cancel(self, sequence: _Sequence) -> None:
        with self._lock:
            if sequence.state == "waiting":
                sequence.state = "done"
                self._waiting_count -= 1
                self._finish(sequence, "cancelled")
            elif sequence.state == "active":
                sequence.cancel_requested = True
                self._lock.notify()

    # -- the engine thread -------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    while not self._closing and not self._waiting_count and not self._batch:
                        self._lock.wait()
                    if self._closing:
                        break
                admitted: list[_Sequence] = []
                try:
                    # Cancelled sequences leave first, so their slots go to waiting ones now.
                    self._retire([i for i, s in enumerate(self._batch.sequences)
                                  if s.cancel_requested], reason="cancelled")  # fmt: skip
                    with self._lock:
                        admitted = self._admit()
                        waiting = self._waiting_count
                    self._step(admitted, waiting)
                except Exception as exc:  # one bad step must not stop the service
                    logger.error("llm.step_failed model=%s error=%s", self.name, type(exc).__name__)
                    for sequence in [*self._batch.sequences, *admitted]:
                        if sequence.state != "done":
                            self._finish(sequence, "error", error=InferenceError())
                    self._batch = _Batch(self._vocab, self._device)
            self._shutdown()

    def _shutdown(self) -> None:
        error = OverloadedError("model is shutting down", retry_after=self.config.retry_after_s)
        with self._lock:
            waiting = [s for _, s in self._waiting if s.state == "waiting"]
            self._waiting.clear()
            self._waiting_count = 0
        for sequence in [*waiting, *self._batch.sequences]:
            self._finish(sequence, "error", error=error)
        self._batch = _Batch(self._vocab, self._device)

    def _admit(self) -> list[_Sequence]:
        """Pop waiting sequences into the free slots, highest priority first (lock held)."""
        admitted: list[_Sequence] = []
        budget = self.config.max_prefill_tokens
        free = self.config.max_batch_size - len(self._batch)
        while self._waiting and len(admitted) < free:
            _, sequence = self._waiting[0]
            if sequence.state != "waiting":  # cancelled while queued
                heapq.heappop(self._waiting)
                continue
            if admitted and len(sequence.prompt) > budget:
                break
            heapq.heappop(self._waiting)
            self._waiting_count -= 1
            sequence.state = "active"
            sequence.admitted_at = time.perf_counter()
            budget -= len(sequence.prompt)
            admitted.append(sequence)
        return admitted

    def _step(self, admitted: list[_Sequence], waiting: int) -> None:
        started = time.perf_counter()
        prefill_tokens = 0
        for sequence in admitted:
            if sequence.cancel_requested:
                self._finish(sequence, "cancelled")
                continue
            prefill_tokens += len(sequence.prompt)
            self._prefill(sequence)
        decoded = len(self._batch)
        new_tokens = len(admitted)
        if self._batch:
            new_tokens += self._decode_step()
        self._steps += 1
        self._observer.on_step(StepRecord(decoded, waiting, len(admitted), prefill_tokens,
                                          new_tokens, time.perf_counter() - started))  # fmt: skip

    def _prefill(self, sequence: _Sequence) -> None:
        from transformers import DynamicCache

        ids = torch.tensor([sequence.prompt], dtype=torch.long, device=self._device)
        cache = DynamicCache()
        out = self._model(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache,
                          use_cache=True, logits_to_keep=1)  # fmt: skip
        logits = out.logits[:, -1, :].float()
        row = [sequence.sampler]
        nothing_yet = torch.zeros((1, self._vocab), device=self._device)
        token = choose(apply_penalties(logits, nothing_yet, row), row)[0]
        self._batch.join(sequence, cache, token)
        self._batch.counts[-1, token] += 1.0
        self._emit_token(len(self._batch) - 1, token)
        self._retire_done()

    def _decode_step(self) -> int:
        batch = self._batch
        ids = torch.tensor(batch.next_tokens, dtype=torch.long, device=self._device).unsqueeze(1)
        positions = batch.mask.sum(dim=1, keepdim=True)
        mask = torch.cat([batch.mask, torch.ones_like(positions)], dim=1)
        out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions,
                          cache=batch.cache, use_cache=True)  # fmt: skip
        batch.mask = mask
        rows = [s.sampler for s in batch.sequences]
        tokens = choose(apply_penalties(out.logits[:, -1, :].float(), batch.counts, rows), rows)
        every_row = torch.arange(len(tokens), device=self._device)
        batch.counts[every_row, torch.tensor(tokens, device=self._device)] += 1.0
        for row, token in enumerate(tokens):
            self._emit_token(row, token)
        self._retire_done()
        return len(tokens)

    def _emit_token(self, row: int, token: int) -> None:
        """Record `token` for the batch row, deliver its text, decide whether it finishes."""
        sequence = self._batch.sequences[row]
        now = time.perf_counter()
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self._observer.on_first_token(now - sequence.submitted)
        elif sequence.last_token_at is not None:
            self._observer.on_token_gap(now - sequence.last_token_at)
        sequence.last_token_at = now
        sequence.generated.append(token)
        self._batch.next_tokens[row] = token
        self._tokens += 1
        params = sequence.params
        if token in self._eos and not params.ignore_eos:
            self._deliver(sequence, self._drain(sequence))
            sequence.state = "done"
            self._finish(sequence, "stop")
            return
        text, stopped = sequence.stop.push(sequence.detokenizer.push(token))
        if not stopped and len(sequence.generated) >= params.max_tokens:
            tail, stopped = sequence.stop.push(sequence.detokenizer.flush())
            text += tail if stopped else tail + sequence.stop.flush()
            self._deliver(sequence, text)
            sequence.state = "done"
            self._finish(sequence, "stop" if stopped else "length")
            return
        self._deliver(sequence, text)
        if stopped:
            sequence.state = "done"
            self._finish(sequence, "stop")

    def _drain(self, sequence: _Sequence) -> str:
        text, stopped = sequence.stop.push(sequence.detokenizer.flush())
        return text if stopped else text + sequence.stop.flush()

    def _retire_done(self) -> None:
        keep = [i for i, s in enumerate(self._batch.sequences) if s.state != "done"]
        self._batch.keep(keep)

    def _retire(self, rows: list[int], *, reason: EngineFinish) -> None:
        if not rows:
            return
        for i in rows:
            self._finish(self._batch.sequences[i], reason)
        gone = set(rows)
        self._batch.keep([i for i in range(len(self._batch)) if i not in gone])

    # -- delivery ----------------------------------------------------------------------

    def _deliver(self, sequence: _Sequence, text: str) -> None:
        if text:
            self._put(sequence, TokenDelta(text, len(sequence.generated)))

    def _finish(
        self, sequence: _Sequence, reason: EngineFinish, *, error: ServiceError | None = None
    ) -> None:
        sequence.state = "done"
        now = time.perf_counter()
        admitted = sequence.admitted_at if sequence.admitted_at is not None else now
        event = Finished(
            finish_reason=reason, prompt_tokens=len(sequence.prompt),
            completion_tokens=len(sequence.generated), queued_s=admitted - sequence.submitted,
            time_to_first_token_s=(None if sequence.first_token_at is None
                                   else sequence.first_token_at - sequence.submitted),
            duration_s=now - sequence.submitted, error=error,
        )  # fmt: skip
        self._put(sequence, event)
        self._observer.on_finish(event)

    def _put(self, sequence: _Sequence, event: Event) -> None:
        try:
            sequence.loop.call_soon_threadsafe(sequence.queue.put_nowait, event)
        except RuntimeError:  # the caller's loop is gone: nobody is listening
            sequence.cancel_requested = True
