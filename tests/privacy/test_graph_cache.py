"""The converted PII graph is kept between starts, and never loaded unless it is exactly what
was recorded: a truncated or altered file is converted again, not run."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from pathlib import Path

from secure_aiaas.privacy import pii_model
from secure_aiaas.privacy.service import _pii_graph


def _files(cache: Path) -> tuple[Path, Path]:
    (graph,) = cache.glob("pii-*.onnx")
    (index,) = cache.glob("pii-*.json")
    return graph, index


def test_a_converted_graph_is_kept_owner_only_and_read_back_verified(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert pii_model.cached_graph("int8", cache) is None  # nothing kept yet
    converted = asyncio.run(_pii_graph("int8", cache))
    graph_file, index_file = _files(cache)
    assert graph_file.read_bytes() == converted
    for path in (graph_file, index_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pii_model.cached_graph("int8", cache) == converted
    # The next start reads it (no conversion: a second file would not appear either).
    assert asyncio.run(_pii_graph("int8", cache)) == converted
    assert len(list(cache.iterdir())) == 2


def test_an_altered_or_truncated_cache_is_not_loaded_and_is_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    good = b"stand-in graph bytes"
    pii_model.store_graph("int8", good, cache)
    graph_file, _ = _files(cache)
    assert pii_model.cached_graph("int8", cache) == good
    graph_file.write_bytes(b"Stand-in graph bytes")  # one byte changed
    assert pii_model.cached_graph("int8", cache) is None
    graph_file.write_bytes(good[:5])  # a partial file
    assert pii_model.cached_graph("int8", cache) is None
    # A start with the altered cache converts again and keeps the real graph.
    converted = asyncio.run(_pii_graph("int8", cache))
    assert hashlib.sha256(converted).digest() != hashlib.sha256(good).digest()
    assert pii_model.cached_graph("int8", cache) == converted


def test_the_key_names_the_shipped_graph_and_the_conversion(tmp_path: Path) -> None:
    shipped = pii_model.shipped_graph()
    key = pii_model.cache_key("int8", shipped)
    assert key == pii_model.cache_key("int8", shipped)
    assert key != pii_model.cache_key("int8", shipped + b"\0")  # another model: another entry
    assert key != pii_model.cache_key("q4", shipped)
    # The shipped precision is never cached: it is read as shipped.
    assert pii_model.cached_graph("q4", tmp_path / "empty") == shipped
