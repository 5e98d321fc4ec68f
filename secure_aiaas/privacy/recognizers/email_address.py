"""EMAIL_ADDRESS: addresses in prose, URLs and query strings, ``@`` or URL-encoded ``%40``.

Presidio's e-mail regex backtracks quadratically on long runs of address characters and takes
``email=`` of a query string into the local part. Here one RE2 pattern (linear time) finds
``local@domain.tld``; the local part stops at the characters that delimit URL parameters
(``=``, ``&``, ``?``, ``/``, ``:``), and the domain's suffix must be a real public suffix
(tldextract's bundled snapshot, offline).
"""

from __future__ import annotations

import re2
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

_LOCAL = r"[A-Za-z0-9._%+'-]"
_EMAIL = re2.compile(
    rf"(?:^|[^A-Za-z0-9._%+'-])({_LOCAL}{{1,64}}(?:@|%40)[A-Za-z0-9-]{{1,63}}(?:\.[A-Za-z0-9-]{{1,63}}){{0,8}}\.[A-Za-z]{{2,24}})"
)


class EmailAddressRecognizer(LocalRecognizer):
    """E-mail addresses, validated by their public suffix."""

    ENTITY = "EMAIL_ADDRESS"

    def __init__(self, score: float = 0.9) -> None:
        self.score = score
        super().__init__(
            supported_entities=[self.ENTITY], name="EmailAddressRecognizer", supported_language="en"
        )

    def load(self) -> None:  # nothing to load
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return e-mail addresses whose domain ends in a known public suffix."""
        if "@" not in text and "%40" not in text:
            return []
        import tldextract

        out: list[RecognizerResult] = []
        for m in _EMAIL.finditer(text):
            value = m.group(1)
            sep = "@" if "@" in value else "%40"
            raw_local, _, domain = value.partition(sep)
            local = raw_local.lstrip(".")
            if not local or not tldextract.extract(domain.lower()).suffix:
                continue
            start = m.start(1) + len(raw_local) - len(local)
            out.append(RecognizerResult(self.ENTITY, start, m.end(1), self.score))
        return out
