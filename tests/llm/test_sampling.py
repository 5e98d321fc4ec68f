"""Per-row penalties and sampling."""

from __future__ import annotations

import torch

from secure_aiaas.llm.sampling import RowSampler, SamplingParams, apply_penalties, choose

CPU = torch.device("cpu")


def row(**params: object) -> RowSampler:
    return RowSampler.for_request(
        SamplingParams(max_tokens=1, **params),  # type: ignore[arg-type]
        default_repetition=1.0,
        device=CPU,
    )


def test_repetition_penalty_touches_only_generated_tokens() -> None:
    logits = torch.tensor([[2.0, -2.0, 2.0, 1.0]])
    counts = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    out = apply_penalties(logits.clone(), counts, [row(repetition_penalty=2.0)])
    assert out.tolist() == [[1.0, -4.0, 2.0, 1.0]]


def test_presence_and_frequency_penalties_subtract() -> None:
    logits = torch.zeros((1, 3))
    counts = torch.tensor([[3.0, 1.0, 0.0]])
    out = apply_penalties(logits, counts, [row(presence_penalty=0.5, frequency_penalty=1.0)])
    assert out.tolist() == [[-3.5, -1.5, 0.0]]


def test_greedy_rows_take_the_argmax_and_top_p_keeps_the_nucleus() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    rows = [row(temperature=0.0), row(temperature=1.0, top_p=0.5, seed=1)]
    for _ in range(20):
        assert choose(logits, rows) == [1, 1]  # token 1 alone holds more than half the mass


def test_suppressed_tokens_are_never_chosen() -> None:
    sampler = RowSampler.for_request(
        SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True),
        default_repetition=1.0,
        device=CPU,
        eos_token_ids=(1,),
    )
    logits = apply_penalties(torch.tensor([[0.0, 9.0, 1.0]]), torch.zeros((1, 3)), [sampler])
    assert choose(logits, [sampler]) == [2]


def test_a_seed_fixes_the_draws() -> None:
    logits = torch.zeros((1, 50))
    draws = [[choose(logits, [r])[0] for _ in range(10)] for r in (row(seed=3), row(seed=3))]
    assert draws[0] == draws[1]
    assert len(set(draws[0])) > 1
