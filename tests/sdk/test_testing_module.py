"""docs/sdk.md's example of `secure_aiaas.testing`, as written there."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def test_the_documented_stand_in_example_runs() -> None:
    section = DOC.read_text().split("## Testing code that uses the SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    exec(compile(match.group(1), str(DOC), "exec"), {})  # noqa: S102 - our own documentation
