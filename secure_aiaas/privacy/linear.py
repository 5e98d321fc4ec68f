"""Regexes that run in linear time: RE2, with a memory cap.

Kept apart from the recognizers (which need Presidio, and through it spaCy and transformers):
validating a profile's custom patterns must not load those into the server's or the CLI's
process (seconds and hundreds of MB for one compile check).
"""

from __future__ import annotations

from typing import Any

import re2

# A pathological pattern fails to compile instead of eating memory.
MAX_MEM = 8 << 20


def compile_linear(pattern: str, *, ignore_case: bool = False) -> Any:
    """Compile with RE2 (raises ``re2.error`` for what RE2 cannot run in linear time)."""
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.case_sensitive = not ignore_case
    return re2.compile(pattern, options)
