"""Measure a scrubber on the evaluation set: per-entity recall, PII-free texts changed, records/s.

A PII value counts as leaked when it survives verbatim (as a whole word) in the output. The same
function measures our scrubber and Presidio's default pipeline, so the figures are comparable.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from secure_aiaas.privacy.evaluation.samples import Sample

ScrubBatch = Callable[[Sequence[Sample]], list[str]]


@dataclass
class Report:
    """Figures for one scrubber on one split."""

    name: str
    split: str
    found: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    clean_changed: int = 0
    clean_total: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process only: robust to other load, blind to worker processes
    records: int = 0
    leaks: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (type, value, domain): synthetic data only

    @property
    def recall(self) -> float:
        """Recall over all PII values."""
        return sum(self.found.values()) / max(1, sum(self.total.values()))

    def recall_by_entity(self) -> dict[str, float]:
        """Entity type → recall."""
        return {t: self.found[t] / self.total[t] for t in sorted(self.total)}

    @property
    def clean_changed_rate(self) -> float:
        """Share of PII-free texts that the scrubber changed."""
        return self.clean_changed / max(1, self.clean_total)

    @property
    def records_per_cpu_s(self) -> float:
        """Records per CPU second of this process (meaningful for single-process pipelines)."""
        return self.records / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def records_per_s(self) -> float:
        """Throughput over the whole split."""
        return self.records / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """Plain figures (no values) for printing or benchmark extra_info."""
        return {
            "name": self.name,
            "split": self.split,
            "recall": round(self.recall, 4),
            "recall_by_entity": {k: round(v, 4) for k, v in self.recall_by_entity().items()},
            "pii_free_changed": round(self.clean_changed_rate, 4),
            "records_per_s": round(self.records_per_s, 1),
            "records_per_cpu_s": round(self.records_per_cpu_s, 1),
            "records": self.records,
        }


def leaked(value: str, output: str) -> bool:
    """True when ``value`` survives verbatim as a whole token sequence in ``output``."""
    return re.search(r"(?<![^\W_])" + re.escape(value) + r"(?![^\W_])", output) is not None


def evaluate(name: str, split: str, samples: Sequence[Sample], scrub: ScrubBatch) -> Report:
    """Run ``scrub`` over all samples (timed) and score the outputs."""
    start, cpu_start = time.perf_counter(), time.process_time()
    outputs = scrub(samples)
    report = Report(
        name,
        split,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        records=len(samples),
    )
    for sample, out in zip(samples, outputs):
        if not sample.gold:
            report.clean_total += 1
            report.clean_changed += out != sample.text
            continue
        for etype, value in sample.values():
            report.total[etype] += 1
            if leaked(value, out):
                report.leaks.append((etype, value, sample.domain))
            else:
                report.found[etype] += 1
    return report


def ours(scrubber: Any, tenant: str = "eval") -> ScrubBatch:
    """Our scrubber: texts as text, JSON samples field by field (as the service does)."""

    def run(samples: Sequence[Sample]) -> list[str]:
        outputs: list[str | None] = [None] * len(samples)
        plain = [i for i, s in enumerate(samples) if s.domain != "json"]
        for i, res in zip(
            plain, scrubber.scrub_texts([samples[i].text for i in plain], tenant=tenant)
        ):
            outputs[i] = res.text
        structured = [i for i, s in enumerate(samples) if s.domain == "json"]
        objs = [json.loads(samples[i].text) for i in structured]
        for i, res in zip(structured, scrubber.scrub_json_batch(objs, tenant=tenant)):
            outputs[i] = json.dumps(res.value, ensure_ascii=False)
        return [o or "" for o in outputs]

    return run
