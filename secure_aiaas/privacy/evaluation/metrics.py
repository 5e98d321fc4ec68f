"""Measure a scrubber on an evaluation set: recall per type and per format, PII-free texts changed,
records/s and records per CPU-second.

Two leak criteria, both reported:

- **verbatim** (the headline): a value leaks when it survives verbatim as a whole token run;
- **strict**: a value leaks when any of its identifying words (letters, ≥ 3 characters, or
  digit runs of ≥ 4) survives as a whole word while it does not occur elsewhere in the input,
  so "<PERSON_1> Lopez" counts as a leak of "Maria Lopez".

The same function measures our scrubber and Presidio's defaults, so the figures are comparable.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from secure_aiaas.privacy.evaluation.samples import Sample

ScrubBatch = Callable[[Sequence[Sample]], list[str]]
_WORD = re.compile(r"[^\W\d_]{3,}|\d{4,}")


@dataclass
class Report:
    """Figures for one scrubber on one set."""

    name: str
    split: str
    found: Counter[str] = field(default_factory=Counter)
    found_strict: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    format_found: Counter[str] = field(default_factory=Counter)
    format_total: Counter[str] = field(default_factory=Counter)
    clean_changed: int = 0
    clean_total: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process plus the given worker processes
    records: int = 0
    leaks: list[tuple[str, str, str]] = field(default_factory=list)  # synthetic data only
    changed: list[str] = field(default_factory=list)  # PII-free texts that changed

    @property
    def recall(self) -> float:
        """Recall over all PII values (verbatim criterion)."""
        return sum(self.found.values()) / max(1, sum(self.total.values()))

    @property
    def recall_strict(self) -> float:
        """Recall over all PII values (strict criterion)."""
        return sum(self.found_strict.values()) / max(1, sum(self.total.values()))

    def recall_by_entity(self) -> dict[str, float]:
        """Entity type → recall."""
        return {t: self.found[t] / self.total[t] for t in sorted(self.total)}

    def recall_by_format(self) -> dict[str, float]:
        """Format (letter, chat, log, …) → recall."""
        return {d: self.format_found[d] / self.format_total[d] for d in sorted(self.format_total)}

    @property
    def clean_changed_rate(self) -> float:
        """Share of PII-free texts that the scrubber changed."""
        return self.clean_changed / max(1, self.clean_total)

    @property
    def records_per_cpu_s(self) -> float:
        """Records per CPU second (all processes that did the work)."""
        return self.records / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def records_per_s(self) -> float:
        """Throughput over the whole set."""
        return self.records / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """Plain figures (no values) for printing or benchmark extra_info."""
        return {
            "name": self.name,
            "split": self.split,
            "recall": round(self.recall, 4),
            "recall_strict": round(self.recall_strict, 4),
            "recall_by_entity": {k: round(v, 4) for k, v in self.recall_by_entity().items()},
            "recall_by_format": {k: round(v, 4) for k, v in self.recall_by_format().items()},
            "pii_free_changed": round(self.clean_changed_rate, 4),
            "records_per_s": round(self.records_per_s, 1),
            "records_per_cpu_s": round(self.records_per_cpu_s, 1),
            "records": self.records,
        }


def leaked(value: str, output: str) -> bool:
    """True when ``value`` survives verbatim as a whole token sequence in ``output``."""
    return re.search(r"(?<![^\W_])" + re.escape(value) + r"(?![^\W_])", output) is not None


def leaked_strict(sample: Sample, start: int, end: int, output: str) -> bool:
    """True when an identifying word of the value survives and occurs nowhere else in the input."""
    outside = sample.text[:start] + " " + sample.text[end:]
    for m in _WORD.finditer(sample.text, start, end):
        word = m.group()
        if leaked(word, output) and not leaked(word, outside):
            return True
    return False


def cpu_seconds(pids: Sequence[int] = ()) -> float:
    """CPU time of this process plus the given (worker) processes, from /proc."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def evaluate(
    name: str,
    split: str,
    samples: Sequence[Sample],
    scrub: ScrubBatch,
    pids: Callable[[], Sequence[int]] = tuple,
) -> Report:
    """Run ``scrub`` over all samples (timed) and score the outputs."""
    start, cpu_start = time.perf_counter(), cpu_seconds(pids())
    outputs = scrub(samples)
    report = Report(
        name,
        split,
        seconds=time.perf_counter() - start,
        cpu_seconds=cpu_seconds(pids()) - cpu_start,
        records=len(samples),
    )
    for sample, out in zip(samples, outputs):
        if not sample.gold:
            report.clean_total += 1
            if _changed(sample, out):
                report.clean_changed += 1
                report.changed.append(sample.text)
            continue
        for g in sample.gold:
            value = sample.text[g.start : g.end]
            report.total[g.entity_type] += 1
            report.format_total[sample.domain] += 1
            if leaked(value, out):
                report.leaks.append((g.entity_type, value, sample.domain))
            else:
                report.found[g.entity_type] += 1
                report.format_found[sample.domain] += 1
            if not leaked_strict(sample, g.start, g.end, out):
                report.found_strict[g.entity_type] += 1
    return report


def _changed(sample: Sample, output: str) -> bool:
    if is_json(sample):
        try:
            return bool(json.loads(output) != json.loads(sample.text))
        except ValueError:
            return True
    return output != sample.text


def is_json(sample: Sample) -> bool:
    """JSON records are scrubbed as JSON values, the others as text."""
    return sample.domain.endswith("json")


def ours(scrubber: Any, tenant: str = "eval") -> ScrubBatch:
    """Our scrubber: texts as text, JSON records as JSON values (as the service does)."""

    def run(samples: Sequence[Sample]) -> list[str]:
        outputs: list[str | None] = [None] * len(samples)
        plain = [i for i, s in enumerate(samples) if not is_json(s)]
        for i, res in zip(
            plain, scrubber.scrub_texts([samples[i].text for i in plain], tenant=tenant)
        ):
            outputs[i] = res.text
        structured = [i for i, s in enumerate(samples) if is_json(s)]
        objs = [json.loads(samples[i].text) for i in structured]
        for i, res in zip(structured, scrubber.scrub_json_batch(objs, tenant=tenant)):
            outputs[i] = json.dumps(res.value, ensure_ascii=False)
        return [o or "" for o in outputs]

    return run
