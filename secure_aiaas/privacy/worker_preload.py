"""Imported once by the scrubber's forkserver, before it forks any detection worker.

It holds what every worker needs except its models: spaCy, Presidio's analyzer and our
recognizers (~2 s of CPU per import). Each worker, at start and after a crash, then only
loads its models. torch, transformers and tensorflow are blocked first: spaCy's and
Presidio's optional integrations import them when present, detection never uses them, and
each would cost ~350 MB per worker.
"""

from __future__ import annotations

import sys

UNUSED_IN_WORKERS = ("torch", "transformers", "tensorflow")

for _name in UNUSED_IN_WORKERS:
    if _name not in sys.modules:
        sys.modules[_name] = None  # type: ignore[assignment]  # import raises ImportError

import secure_aiaas.privacy.presidio_engine  # noqa: E402, F401
