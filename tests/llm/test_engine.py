"""The continuous-batching engine on a tiny random Llama (fp32, CPU): what batching must not
change, and the bounds it must keep."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import torch

from secure_aiaas.errors import ContextLengthError, InputError, OverloadedError
from secure_aiaas.llm.config import EngineConfig
from secure_aiaas.llm.engine import LLMEngine, TokenDelta
from secure_aiaas.llm.sampling import SamplingParams
from tests.llm.conftest import Recorder, collect, decode_with, greedy
from tests.llm.tiny import tiny_model

pytestmark = pytest.mark.anyio

PROMPTS = ["Hello there", "The quick brown fox jumps over", "a", "Zürich → ünïcode"]


class SlowSteps(Recorder):
    """Steps take at least `seconds`: the event loop gets to act between two of them."""

    def __init__(self, seconds: float = 0.004) -> None:
        super().__init__()
        self.seconds = seconds
        self.threads: set[int] = set()

    def on_step(self, record: Any) -> None:
        super().on_step(record)
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)


def ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text).ids)


async def solo(engine: LLMEngine, prompt: list[int], params: SamplingParams) -> str:
    text, _ = await collect(engine.submit(prompt, params))
    return text


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_sequences_joining_a_running_batch_decode_exactly_as_alone(
    make_engine: Any, tokenizer: Any
) -> None:
    observer = SlowSteps()
    engine = make_engine(observer)
    prompts = [ids(tokenizer, p) for p in PROMPTS]
    lengths = [40, 12, 25, 30]
    alone = [await solo(engine, p, greedy(n)) for p, n in zip(prompts, lengths)]
    observer.steps.clear()

    first = engine.submit(prompts[0], greedy(lengths[0]))
    first_text = [(await first.__anext__())]  # the first one is running ...
    later = [
        asyncio.create_task(collect(engine.submit(p, greedy(n))))
        for p, n in zip(prompts[1:], lengths[1:])
    ]  # ... when the others arrive
    rest, finished = await collect(first)
    results = [("".join(e.text for e in first_text if isinstance(e, TokenDelta)) + rest)]
    results += [text for text, _ in await asyncio.gather(*later)]

    assert results == alone
    assert finished.completion_tokens == lengths[0] and finished.finish_reason == "length"
    joins = [s for s in observer.steps if s.admitted and s.batch_size > s.admitted]
    assert joins, "newcomers joined between decoding steps of a running sequence"
    sizes = [s.batch_size for s in observer.steps]
    assert max(sizes) == 4 and sizes[-1] == 1  # everyone together, then the long one alone
    assert engine.stats().active == 0


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mistral", "gpt2"])
async def test_every_tested_architecture_batches_exactly(model_type: str, tokenizer: Any) -> None:
    from secure_aiaas.llm.config import EngineConfig

    model = tiny_model(model_type, seed=3)
    engine = LLMEngine(
        model,
        decode=decode_with(tokenizer),
        eos_token_ids=[2],
        context_limit=256,
        config=EngineConfig(repetition_penalty=1.0),
        observer=SlowSteps(0.002),
    )
    engine.start()
    try:
        prompts = [ids(tokenizer, p) for p in PROMPTS[:3]]
        alone = [await solo(engine, p, greedy(16)) for p in prompts]
        together = await asyncio.gather(*(solo(engine, p, greedy(16)) for p in prompts))
        assert list(together) == alone
        with torch.inference_mode():
            reference = model.generate(
                torch.tensor([prompts[1]]),
                max_new_tokens=16,
                min_new_tokens=16,
                do_sample=False,
                pad_token_id=0,
            )
        assert alone[1] == tokenizer.decode(
            reference[0, len(prompts[1]) :].tolist(), skip_special_tokens=True
        )
    finally:
        await engine.close()


async def test_generation_runs_off_the_event_loop(make_engine: Any, tokenizer: Any) -> None:
    observer = SlowSteps(0)
    engine = make_engine(observer)
    await solo(engine, ids(tokenizer, "hi"), greedy(3))
    assert observer.threads and threading.get_ident() not in observer.threads


async def test_stop_sequences_cut_the_answer_across_token_boundaries(
    make_engine: Any, tokenizer: Any
) -> None:
    engine = make_engine()
    prompt = ids(tokenizer, "The quick brown fox jumps over")
    full = await solo(engine, prompt, greedy(40))
    start = next(i for i in range(8, len(full) - 3) if "\ufffd" not in full[i : i + 3])
    stop = full[start : start + 3]  # three characters: at least three byte tokens
    text, finished = await collect(engine.submit(prompt, greedy(40, stop=(stop,))))
    assert text == full[: full.index(stop)]
    assert finished.finish_reason == "stop" and stop not in text
    assert finished.completion_tokens < 40
    # Two stops: the earlier one in the text wins; a stop that never occurs changes nothing.
    early = full[2:4] if "\ufffd" not in full[2:4] else stop
    text, _ = await collect(engine.submit(prompt, greedy(40, stop=(stop, early))))
    assert text == full[: min(full.index(stop), full.index(early))]
    text, finished = await collect(engine.submit(prompt, greedy(40, stop=("never there",))))
    assert text == full and finished.finish_reason == "length"


async def test_max_tokens_and_end_of_sequence(tiny: Any, tokenizer: Any, make_engine: Any) -> None:
    engine = make_engine()
    prompt = ids(tokenizer, "Hello there")
    for n in (1, 2, 17):
        _, finished = await collect(engine.submit(prompt, greedy(n)))
        assert (finished.finish_reason, finished.completion_tokens) == ("length", n)
    with torch.inference_mode():
        out = tiny.generate(
            torch.tensor([prompt]),
            max_new_tokens=12,
            min_new_tokens=12,
            do_sample=False,
            pad_token_id=0,
        )[0, len(prompt) :].tolist()
    eos = next(t for i, t in enumerate(out) if i >= 3 and t not in out[:i])
    stopping = LLMEngine(
        tiny,
        decode=decode_with(tokenizer),
        eos_token_ids=[eos],
        context_limit=256,
        config=EngineConfig(repetition_penalty=1.0),
    )
    stopping.start()
    try:
        text, finished = await collect(
            stopping.submit(prompt, SamplingParams(max_tokens=12, temperature=0))
        )
        position = out.index(eos)
        assert finished.finish_reason == "stop" and finished.completion_tokens == position + 1
        assert text == tokenizer.decode(out[:position], skip_special_tokens=True)
        _, ignored = await collect(stopping.submit(prompt, greedy(12)))  # ignore_eos
        assert ignored.completion_tokens == 12
    finally:
        await stopping.close()


async def test_context_bound_is_checked_before_queueing(make_engine: Any, tokenizer: Any) -> None:
    engine = make_engine()
    prompt = [5] * 200
    with pytest.raises(ContextLengthError) as refused:
        engine.submit(prompt, greedy(57))
    assert refused.value.code == "context_length_exceeded"
    assert engine.stats().waiting == 0
    _, finished = await collect(engine.submit(prompt, greedy(56)))  # exactly the limit
    assert finished.completion_tokens == 56
    for bad in ([], [10_000], [-1]):
        with pytest.raises(InputError):
            engine.submit(bad, greedy(1))
    with pytest.raises(InputError):
        engine.submit([5], SamplingParams(max_tokens=0))


async def test_seeded_sampling_is_reproducible_alone_and_in_a_batch(
    make_engine: Any, tokenizer: Any
) -> None:
    engine = make_engine(SlowSteps(0.002))
    prompt = ids(tokenizer, "Hello there")

    def sampled(seed: int | None) -> SamplingParams:
        return SamplingParams(max_tokens=30, temperature=1.0, top_p=0.9, seed=seed, ignore_eos=True)

    first = await solo(engine, prompt, sampled(7))
    assert await solo(engine, prompt, sampled(7)) == first
    crowd = [solo(engine, ids(tokenizer, p), sampled(s)) for p, s in zip(PROMPTS, (1, 2, None))]
    results = await asyncio.gather(solo(engine, prompt, sampled(7)), *crowd)
    assert results[0] == first
    assert await solo(engine, prompt, sampled(8)) != first


async def test_higher_priority_is_admitted_first_then_arrival_order(
    make_engine: Any, tokenizer: Any
) -> None:
    engine = make_engine(SlowSteps(0.002), max_batch_size=1)
    blocker = engine.submit(ids(tokenizer, "block"), greedy(200))
    await blocker.__anext__()  # the blocker holds the only slot
    order: list[str] = []

    async def run(label: str, priority: int) -> None:
        await collect(engine.submit(ids(tokenizer, label), greedy(2), priority=priority))
        order.append(label)

    tasks = [
        asyncio.create_task(run(label, p))
        for label, p in (("low-1", 0), ("high", 5), ("low-2", 0), ("mid", 1))
    ]
    await until(lambda: engine.stats().waiting == 4)
    blocker.cancel()
    await asyncio.gather(*tasks)
    assert order == ["high", "mid", "low-1", "low-2"]


async def test_priority_comes_from_the_injected_callable(tiny: Any, tokenizer: Any) -> None:
    seen: list[int] = []
    engine = LLMEngine(
        tiny,
        decode=decode_with(tokenizer),
        eos_token_ids=[2],
        context_limit=256,
        priority_of=lambda: 9,
    )
    engine.start()
    try:
        stream = engine.submit(ids(tokenizer, "x"), greedy(1))
        seen.append(stream._sequence.priority)
        await collect(stream)
    finally:
        await engine.close()
    assert seen == [9]


async def test_cancel_frees_the_slot_at_the_next_step(make_engine: Any, tokenizer: Any) -> None:
    observer = SlowSteps()
    engine = make_engine(observer, max_batch_size=1)
    stream = engine.submit(ids(tokenizer, "long"), greedy(200))
    await stream.__anext__()
    stream.cancel()
    text, finished = await collect(stream)
    assert finished.finish_reason == "cancelled" and finished.completion_tokens < 200
    await until(lambda: engine.stats().active == 0)
    _, after = await collect(engine.submit(ids(tokenizer, "next"), greedy(3)))
    assert after.finish_reason == "length"


async def test_a_consumer_that_goes_away_frees_its_slot(make_engine: Any, tokenizer: Any) -> None:
    engine = make_engine(SlowSteps(), max_batch_size=1)
    started = asyncio.Event()

    async def consume() -> None:
        async with engine.submit(ids(tokenizer, "long"), greedy(200)) as stream:
            async for _ in stream:
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()  # what Starlette does when the client disconnects
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: engine.stats().active == 0)
    steps = engine.stats().steps_total
    assert steps < 200
    # A queued request that is abandoned never runs.
    blocker = engine.submit(ids(tokenizer, "block"), greedy(200))
    await blocker.__anext__()
    queued = engine.submit(ids(tokenizer, "queued"), greedy(5))
    queued.cancel()
    assert engine.stats().waiting == 0
    _, finished = await collect(queued)
    assert finished.finish_reason == "cancelled" and finished.completion_tokens == 0
    blocker.cancel()


async def test_a_full_queue_refuses_at_once(make_engine: Any, tokenizer: Any) -> None:
    engine = make_engine(SlowSteps(), max_batch_size=1, max_queue_size=1)
    running = engine.submit(ids(tokenizer, "a"), greedy(100))
    await running.__anext__()
    queued = engine.submit(ids(tokenizer, "b"), greedy(2))
    with pytest.raises(OverloadedError):
        engine.submit(ids(tokenizer, "c"), greedy(2))
    assert engine.stats().rejected_total == 1
    running.cancel()
    _, finished = await collect(queued)
    assert finished.finish_reason == "length"


class FailOnce:
    """A model whose first forward pass raises (a stand-in for a CUDA error or OOM)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.failed = False

    def parameters(self) -> Any:
        return self.model.parameters()

    def get_output_embeddings(self) -> Any:
        return self.model.get_output_embeddings()

    def __call__(self, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("device lost")
        return self.model(**kwargs)


async def test_a_failing_step_fails_its_requests_and_the_engine_goes_on(
    tiny: Any, tokenizer: Any
) -> None:
    engine = LLMEngine(
        FailOnce(tiny), decode=decode_with(tokenizer), eos_token_ids=[2], context_limit=256
    )
    engine.start()
    try:
        _, failed = await collect(engine.submit(ids(tokenizer, "x"), greedy(5)))
        assert failed.finish_reason == "error" and failed.error is not None
        assert failed.error.code == "inference_failed"
        _, ok = await collect(engine.submit(ids(tokenizer, "x"), greedy(5)))
        assert ok.finish_reason == "length"
    finally:
        await engine.close()


async def test_close_ends_running_and_queued_requests(tiny: Any, tokenizer: Any) -> None:
    engine = LLMEngine(
        tiny,
        decode=decode_with(tokenizer),
        eos_token_ids=[2],
        context_limit=256,
        config=EngineConfig(max_batch_size=1),
        observer=SlowSteps(),
    )
    engine.start()
    running = engine.submit(ids(tokenizer, "a"), greedy(200))
    await running.__anext__()
    queued = engine.submit(ids(tokenizer, "b"), greedy(5))
    await engine.close()
    for stream in (running, queued):
        _, finished = await collect(stream)
        assert finished.finish_reason == "error"
        assert isinstance(finished.error, OverloadedError)
    with pytest.raises(OverloadedError):
        engine.submit(ids(tokenizer, "c"), greedy(1))


async def test_metrics_hooks_see_every_token(make_engine: Any, tokenizer: Any) -> None:
    observer = SlowSteps(0)
    engine = make_engine(observer)
    await asyncio.gather(*(solo(engine, ids(tokenizer, p), greedy(10)) for p in PROMPTS[:3]))
    # The last step's record lands just after its tokens were delivered.
    await until(lambda: sum(s.new_tokens for s in observer.steps) == 30)
    assert len(observer.first_tokens) == 3
    assert len(observer.gaps) == 3 * 9  # one inter-token gap per token after the first
    assert all(s.queue_depth >= 0 and s.seconds >= 0 for s in observer.steps)
    await until(lambda: len(observer.finished) == 3)
    assert [f.finish_reason for f in observer.finished] == ["length"] * 3
