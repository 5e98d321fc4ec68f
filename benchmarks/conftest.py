"""Benchmarks run with `make bench` (pytest-benchmark), outside the test suite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent / "results"


def pytest_configure(config: pytest.Config) -> None:
    RESULTS.mkdir(exist_ok=True)


@pytest.fixture
def record_figures(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Append one result row (JSON) to benchmarks/results/<module>.jsonl for docs/benchmarks.md."""

    def record(**figures: object) -> None:
        path = RESULTS / f"{Path(str(request.node.fspath)).stem}.jsonl"
        row = {"test": request.node.name, "cpus": os.cpu_count(), **figures}
        with path.open("a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")

    return record


# Reuse the suite's fixtures for real stores and keys.
from tests.conftest import keys_dir, pg_url, policy_dir  # noqa: E402,F401
