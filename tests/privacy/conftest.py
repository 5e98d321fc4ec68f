"""One real Scrubber (Presidio + the real spaCy model) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from secure_aiaas.privacy import Scrubber, load_policy

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "privacy.yaml"


@pytest.fixture(scope="session")
def scrubber() -> Iterator[Scrubber]:
    s = Scrubber.build(load_policy(POLICY))
    yield s
    s.close()
