"""Chat model serving: bare transformers ``generate`` against our engine at 1, 4 and 8 streams.

Same model (the built-in SmolLM2-135M-Instruct), same device, dtype and torch threads, same
~50-token chat prompts, greedy, 64 new tokens per request (the end-of-sequence token is
suppressed on both sides: ``min_new_tokens`` for ``generate``, ``ignore_eos`` for the engine),
no repetition penalty on either side, so both do the same work and must produce the same
tokens (checked: the 1-stream answers are compared with the bare ones).

* ``bare``: ``model.generate`` on one prompt at a time, a `BaseStreamer` stamping each token:
  the fastest simple single-stream way.
* ``engine xN``: N concurrent streams through `LLMEngine` (its thread, the asyncio delivery).

Reported per configuration: aggregate tokens/s, time to first token p50/p99, inter-token
latency p50/p99. Configurations are interleaved round by round (bare, engine x1, x4, x8,
bare, ...) so a noisy neighbour hits all of them alike; the figures are medians over rounds.
A second, shorter pass compares fp32 with bf16 (bare and engine x1).

`measure` is the reusable driver: it takes an async "start one stream" callable yielding the
number of tokens in each chunk as it arrives, so the HTTP-level run (the openai client
against the server) plugs into the same code.

Run: ``python benchmarks/bench_llm.py`` (or under ``make bench``).
Environment: ``SAIAAS_BENCH_DEVICE`` (auto), ``SAIAAS_BENCH_DATA_DIR`` (reuse a data dir that
holds the built-in model; default: convert into a temporary one), ``SAIAAS_BENCH_ROUNDS`` (3),
``SAIAAS_BENCH_STREAMS`` ("1,4,8"), ``SAIAAS_BENCH_DTYPES`` ("bfloat16,float32" on CPU,
"bfloat16" on CUDA), ``OUT`` (where the JSON goes).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

NEW_TOKENS = 64
# About fifty tokens each with the model's chat template around them.
QUESTIONS = [
    "Explain in simple words why the sky looks blue on a clear day.",
    "Describe how a bicycle gear system helps a rider climb steep hills.",
    "Tell me how bread dough rises and why yeast needs warm water.",
    "Explain what a lighthouse keeper did every night in the old days.",
    "Describe the water cycle for a class of ten year old children.",
    "Explain how a library catalogue helps readers find the right book.",
    "Tell me why bees matter for farms and how they carry pollen around.",
    "Describe how a train signal keeps two trains from meeting on one track.",
]

StartStream = Callable[[int], AsyncIterator[int]]  # prompt index -> token counts per chunk


@dataclass(frozen=True)
class Figures:
    label: str
    streams: int
    tokens: int
    seconds: float
    tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _figures(label: str, streams: int, tokens: int, seconds: float, ttfts: list[float],
             gaps: list[float]) -> Figures:  # fmt: skip
    return Figures(label, streams, tokens, round(seconds, 3), round(tokens / seconds, 2),
                   round(1000 * _percentile(ttfts, 0.5), 1),
                   round(1000 * _percentile(ttfts, 0.99), 1),
                   round(1000 * _percentile(gaps, 0.5), 1),
                   round(1000 * _percentile(gaps, 0.99), 1))  # fmt: skip


async def measure(label: str, start: StartStream, streams: int, *, requests: int) -> Figures:
    """`requests` requests over `streams` concurrent closed-loop streams; time every chunk.

    Stream s runs requests s, s + streams, ... back to back (request i uses prompt i).
    """
    ttfts: list[float] = []
    gaps: list[float] = []
    tokens = 0

    async def one(index: int) -> None:
        nonlocal tokens
        started = time.perf_counter()
        last = None
        async for count in start(index):
            now = time.perf_counter()
            if last is None:
                ttfts.append(now - started)
            else:
                gaps.append(now - last)
            last = now
            tokens += count

    async def stream(first: int) -> None:
        for index in range(first, requests, streams):
            await one(index)

    began = time.perf_counter()
    await asyncio.gather(*(stream(s) for s in range(streams)))
    return _figures(label, streams, tokens, time.perf_counter() - began, ttfts, gaps)


def median_figures(runs: Sequence[Figures]) -> Figures:
    """The per-field median of several rounds of one configuration."""
    fields = [f for f in asdict(runs[0]) if f not in ("label", "streams")]
    values = {f: statistics.median(getattr(r, f) for r in runs) for f in fields}
    return Figures(
        runs[0].label,
        runs[0].streams,
        int(values.pop("tokens")),  # type: ignore[arg-type]
        **{k: round(v, 2) for k, v in values.items()},
    )


# -- the two sides -------------------------------------------------------------------------


class Side:
    """The model loaded once per dtype: bare generate and the engine over the same weights."""

    def __init__(self, data_dir: Path, device: str | None, dtype: str) -> None:
        from secure_aiaas.inference import ModelRegistry
        from secure_aiaas.llm.builtin import BUILTIN_CHAT_MODEL
        from secure_aiaas.llm.config import EngineConfig
        from secure_aiaas.llm.engine import LLMEngine
        from secure_aiaas.llm.registry import load_causal_lm

        self.loaded = load_causal_lm(ModelRegistry(data_dir), BUILTIN_CHAT_MODEL, device=device,
                                     dtype=dtype)  # fmt: skip
        self.prompts = [self.loaded.encode_chat([("user", q)]) for q in QUESTIONS]
        self.engine = LLMEngine(self.loaded.model, decode=self.loaded.decode,
                                eos_token_ids=self.loaded.eos_token_ids,
                                context_limit=self.loaded.context_limit,
                                config=EngineConfig(repetition_penalty=1.0, max_batch_size=64))  # fmt: skip

    def bare_one(self, index: int) -> tuple[list[float], list[int]]:
        """One generate call; (token timestamps, token ids)."""
        import torch
        from transformers.generation.streamers import BaseStreamer

        class Stamps(BaseStreamer):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if self.prompt_seen:
                    self.times.append(time.perf_counter())
                self.prompt_seen = True  # generate puts the prompt first

            def end(self) -> None:
                pass

        stamps = Stamps()
        ids = torch.tensor([self.prompts[index]], device=self.loaded.device)
        with torch.inference_mode():
            out = self.loaded.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS, do_sample=False, streamer=stamps,
                pad_token_id=self.loaded.eos_token_ids[0],
            )  # fmt: skip
        return stamps.times, out[0, ids.shape[1] :].tolist()

    def bare(self, rounds_of: int) -> Figures:
        """`rounds_of` prompts one after another (a single stream)."""
        ttfts: list[float] = []
        gaps: list[float] = []
        began = time.perf_counter()
        for i in range(rounds_of):
            started = time.perf_counter()
            times, _ = self.bare_one(i % len(self.prompts))
            ttfts.append(times[0] - started)
            gaps += [b - a for a, b in zip(times, times[1:])]
        return _figures("bare generate", 1, rounds_of * NEW_TOKENS,
                        time.perf_counter() - began, ttfts, gaps)  # fmt: skip

    def start(self, index: int) -> AsyncIterator[int]:
        from secure_aiaas.llm.engine import TokenDelta
        from secure_aiaas.llm.sampling import SamplingParams

        params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
        stream = self.engine.submit(self.prompts[index % len(self.prompts)], params)

        async def chunks() -> AsyncIterator[int]:
            seen = 0
            async for event in stream:
                if isinstance(event, TokenDelta):
                    yield event.completion_tokens - seen
                    seen = event.completion_tokens
                else:
                    if event.completion_tokens > seen:
                        yield event.completion_tokens - seen

        return chunks()

    async def engine_text(self, index: int) -> list[int]:
        """The engine's greedy token ids for prompt `index` (for the equality check)."""
        from secure_aiaas.llm.sampling import SamplingParams

        stream = self.engine.submit(self.prompts[index], SamplingParams(
            max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True))  # fmt: skip
        async for _ in stream:
            pass
        return list(stream._sequence.generated)


async def run_side(side: Side, streams: Sequence[int], rounds: int) -> dict[str, Any]:
    side.engine.start()
    try:
        side.bare(1)  # warm both paths
        await measure("warmup", side.start, 1, requests=1)
        same = [side.bare_one(i)[1] == await side.engine_text(i) for i in range(len(side.prompts))]
        per_config: dict[str, list[Figures]] = {}
        for _ in range(rounds):
            per_config.setdefault("bare", []).append(side.bare(len(side.prompts)))
            for n in streams:
                label = f"engine x{n}"
                # The same eight prompts as bare, spread over n closed-loop streams.
                per_config.setdefault(label, []).append(
                    await measure(label, side.start, n, requests=max(n, len(side.prompts)))
                )
        results = {k: median_figures(v) for k, v in per_config.items()}
        return {"results": results, "identical_greedy_tokens": f"{sum(same)}/{len(same)}"}
    finally:
        await side.engine.close()


def report(dtype: str, device: str, outcome: dict[str, Any]) -> list[dict[str, Any]]:
    results: dict[str, Figures] = outcome["results"]
    bare = results["bare"].tokens_per_s
    rows = []
    print(
        f"\n{device} {dtype}  (greedy tokens identical to bare: "
        f"{outcome['identical_greedy_tokens']})"
    )
    print(
        f"{'configuration':<16}{'tok/s':>9}{'x bare':>8}{'TTFT p50':>10}{'p99':>8}"
        f"{'ITL p50':>9}{'p99':>8}"
    )
    for figures in results.values():
        ratio = figures.tokens_per_s / bare
        print(
            f"{figures.label:<16}{figures.tokens_per_s:>9.1f}{ratio:>8.2f}"
            f"{figures.ttft_p50_ms:>10.0f}{figures.ttft_p99_ms:>8.0f}"
            f"{figures.itl_p50_ms:>9.1f}{figures.itl_p99_ms:>8.1f}"
        )
        rows.append(
            {
                **asdict(figures),
                "dtype": dtype,
                "device": device,
                "ratio_to_bare": round(ratio, 3),
                "identical_greedy_tokens": outcome["identical_greedy_tokens"],
            }
        )
    return rows


def main() -> list[dict[str, Any]]:
    from secure_aiaas.inference import configure_torch_threads, select_device
    from secure_aiaas.llm.builtin import ensure_builtin_chat_model

    threads = configure_torch_threads(None)
    device = str(select_device(os.environ.get("SAIAAS_BENCH_DEVICE")))
    streams = [int(s) for s in os.environ.get("SAIAAS_BENCH_STREAMS", "1,4,8").split(",")]
    rounds = int(os.environ.get("SAIAAS_BENCH_ROUNDS", "3"))
    default_dtypes = "bfloat16" if device.startswith("cuda") else "bfloat16,float32"
    dtypes = os.environ.get("SAIAAS_BENCH_DTYPES", default_dtypes).split(",")
    scratch = None
    data_dir = os.environ.get("SAIAAS_BENCH_DATA_DIR")
    if data_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="bench-llm-")
        data_dir = scratch.name
    ensure_builtin_chat_model(data_dir)
    print(f"device {device}, torch threads {threads}, {NEW_TOKENS} new tokens, rounds {rounds}")
    rows: list[dict[str, Any]] = []
    try:
        for i, dtype in enumerate(dtypes):
            side = Side(Path(data_dir), device, dtype)
            # The first dtype gets every stream count; the others the single-stream comparison.
            outcome = asyncio.run(run_side(side, streams if i == 0 else [1],
                                           rounds if i == 0 else max(1, rounds - 1)))  # fmt: skip
            rows += report(dtype, device, outcome)
            del side
    finally:
        if scratch is not None:
            scratch.cleanup()
    out = Path(os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_llm.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


@pytest.mark.slow
def test_llm_serving(record_figures: Any) -> None:
    """`make bench`: the whole comparison, one result row per configuration."""
    for row in main():
        record_figures(**row)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
