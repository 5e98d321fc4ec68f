"""Keep tldextract (used by Presidio's e-mail recognizer) off the network.

tldextract's module-level extractor fetches the public suffix list over HTTP on first use and
caches it on disk. We replace it with one that reads only the snapshot bundled in the wheel:
no URLs to fetch and no cache directory, so the result does not depend on the host either.
"""

from __future__ import annotations

import tldextract
import tldextract.tldextract as _tld


def offline_extractor() -> tldextract.TLDExtract:
    """A TLDExtract that can only use the bundled suffix-list snapshot."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def make_tldextract_offline() -> None:
    """Point ``tldextract.extract`` (what Presidio calls) at the offline extractor; idempotent."""
    current = _tld.TLD_EXTRACTOR
    if current.suffix_list_urls == () and current.fallback_to_snapshot:
        return
    _tld.TLD_EXTRACTOR = offline_extractor()
