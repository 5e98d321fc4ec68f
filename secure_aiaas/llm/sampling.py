"""Choosing the next token of every sequence in a batch, each under its own parameters.

Penalties are applied to the whole batch at once; greedy rows take the arg-max together;
each sampling row draws from its own `torch.Generator`, seeded from the request's ``seed``,
so a seeded request gets the same tokens whether it runs alone or beside others.

Penalties count only the tokens the model generated, never the prompt: the prompt carries
placeholders (``<PERSON_1>``) the answer must be free to repeat. ``repetition_penalty``
(divides positive logits, multiplies negative ones, as in transformers) stops the small
built-in model's loops; OpenAI's ``presence_penalty`` and ``frequency_penalty`` subtract.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one request is decoded (validated by the caller; `LLMEngine.submit` checks bounds).

    Attributes:
        max_tokens: most tokens to generate (the end-of-sequence token included).
        temperature: 0 is greedy decoding.
        top_p: nucleus sampling mass (1 keeps every token).
        seed: makes sampling reproducible; None draws a random one.
        stop: strings that end the answer (not included in it).
        repetition_penalty: None uses the engine's default; 1 disables it.
        ignore_eos: never end at the end-of-sequence token: it is suppressed, as
            transformers' ``min_new_tokens`` does (benchmarks only; not on the wire).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True, slots=True)
class RowSampler:
    """One batch row's resolved parameters and random stream."""

    temperature: float
    top_p: float
    repetition: float
    presence: float
    frequency: float
    generator: torch.Generator | None  # None for greedy rows
    suppressed: tuple[int, ...] = ()  # token ids never chosen

    @classmethod
    def for_request(
        cls,
        params: SamplingParams,
        *,
        default_repetition: float,
        device: torch.device,
        eos_token_ids: tuple[int, ...] = (),
    ) -> RowSampler:
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=device)
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            generator.manual_seed(seed % (2**63))
        repetition = (
            default_repetition if params.repetition_penalty is None else params.repetition_penalty
        )
        return cls(params.temperature, params.top_p, repetition, params.presence_penalty,
                   params.frequency_penalty, generator,
                   eos_token_ids if params.ignore_eos else ())  # fmt: skip


def apply_penalties(
    logits: torch.Tensor, counts: torch.Tensor, rows: Sequence[RowSampler]
) -> torch.Tensor:
    """Penalised float32 logits [B, V]; `counts` [B, V] holds each row's generated tokens."""
    device = logits.device
    seen = counts > 0
    repetition = torch.tensor([r.repetition for r in rows], device=device).unsqueeze(1)
    if bool((repetition != 1.0).any()):
        penalised = torch.where(logits > 0, logits / repetition, logits * repetition)
        logits = torch.where(seen, penalised, logits)
    frequency = [r.frequency for r in rows]
    presence = [r.presence for r in rows]
    if any(frequency) or any(presence):
        logits = logits - torch.tensor(frequency, device=device).unsqueeze(1) * counts
        logits = logits - torch.tensor(presence, device=device).unsqueeze(1) * seen
    for i, row in enumerate(rows):
        if row.suppressed:
            logits[i, list(row.suppressed)] = float("-inf")
    return logits


def choose(logits: torch.Tensor, rows: Sequence[RowSampler]) -> list[int]:
    """The next token of every row (logits already penalised)."""
    chosen = logits.argmax(dim=-1).tolist()
    for i, row in enumerate(rows):
        if row.generator is not None:
            chosen[i] = _sample(logits[i], row)
    return [int(t) for t in chosen]


def _sample(logits: torch.Tensor, row: RowSampler) -> int:
    scaled = logits / row.temperature
    if row.top_p < 1.0:
        ordered, order = torch.sort(scaled, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        # Drop a token once the mass before it already reaches top_p (the first always stays).
        drop = (cumulative - torch.softmax(ordered, dim=-1)) >= row.top_p
        scaled = scaled.scatter(0, order, ordered.masked_fill(drop, float("-inf")))
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=row.generator).item())
