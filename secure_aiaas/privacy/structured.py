"""JSON values: every string, every number and every object key is a text to scrub.

``collect`` walks a JSON value once, bounded by depth and leaf count (checked before any
detection), and returns the leaves as texts with the nearest field name as context.
``rebuild`` puts the scrubbed texts back:

- a string leaf becomes its scrubbed text;
- a number leaf is kept as a number unless personal data was found in its digits (a card or a
  phone number written as a JSON number): then it becomes the scrubbed **string**
  (``4111111111111111`` → ``"<CREDIT_CARD>"`` or ``"****************"``);
- an object key becomes its scrubbed text; if two keys scrub to the same text, later ones get
  ``#2``, ``#3``… so no field is lost.
Booleans and null are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from secure_aiaas.privacy.limits import JsonTooDeepError, JsonTooLargeError, ScrubLimits


@dataclass(frozen=True)
class Leaf:
    """One text to scrub: where it is (path of keys/indexes), what it is, its field name."""

    path: tuple[Any, ...]
    kind: str  # "string" | "number" | "key"
    text: str
    field_name: str | None

    @property
    def hint(self) -> str | None:
        """The field name as detection context (values only: a key is not its parent's value)."""
        return None if self.kind == "key" else self.field_name


def collect(value: Any, limits: ScrubLimits) -> list[Leaf]:
    """All leaves of ``value`` (depth-first, document order); raises on a bound violation."""
    leaves: list[Leaf] = []
    # An explicit stack, not recursion: a deep document cannot exhaust Python's stack.
    stack: list[tuple[Any, tuple[Any, ...], str | None, int]] = [(value, (), None, 0)]
    while stack:
        node, path, field, depth = stack.pop()
        if depth > limits.max_json_depth:
            raise JsonTooDeepError("max_json_depth", limits.max_json_depth)
        if isinstance(node, str):
            leaves.append(Leaf(path, "string", node, field))
        elif isinstance(node, bool) or node is None:
            pass
        elif isinstance(node, int | float):
            if isinstance(node, float) and not math.isfinite(node):
                continue
            leaves.append(Leaf(path, "number", _number_text(node), field))
        elif isinstance(node, dict):
            children = []
            for k, v in node.items():
                key = str(k)
                leaves.append(Leaf(path + (k,), "key", key, field))
                children.append((v, path + (k,), key, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(node, list | tuple):
            stack.extend(reversed([(v, path + (i,), field, depth + 1) for i, v in enumerate(node)]))
        if len(leaves) > limits.max_json_leaves:
            raise JsonTooLargeError("max_json_leaves", limits.max_json_leaves)
    return leaves


def rebuild(value: Any, leaves: list[Leaf], scrubbed: list[tuple[str, bool]]) -> Any:
    """A copy of ``value`` with each leaf replaced; ``scrubbed[i]`` = (text, anything found)."""
    replacement: dict[tuple[tuple[Any, ...], str], tuple[str, bool]] = {
        (leaf.path, leaf.kind): result for leaf, result in zip(leaves, scrubbed)
    }

    def build(node: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(node, str):
            return replacement.get((path, "string"), (node, False))[0]
        if isinstance(node, bool) or node is None:
            return node
        if isinstance(node, int | float):
            text, found = replacement.get((path, "number"), ("", False))
            return text if found else node
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                key = replacement.get((path + (k,), "key"), (str(k), False))[0]
                unique, n = key, 1
                while unique in out:
                    n += 1
                    unique = f"{key}#{n}"
                out[unique] = build(v, path + (k,))
            return out
        if isinstance(node, list | tuple):
            return [build(v, path + (i,)) for i, v in enumerate(node)]
        return node

    # Iterative over depth would be tidier; ``collect`` already bounded the depth.
    return build(value, ())


def _number_text(n: int | float) -> str:
    if isinstance(n, float) and n.is_integer() and abs(n) < 1e19:
        return str(int(n))
    return str(n)


# --- JSON sent as text ---------------------------------------------------------------------------

_TOKEN = __import__("re").compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?|(-?\d[\d.eE+-]*)')


@dataclass(frozen=True)
class TextLeaf:
    """A string's content or a number inside a JSON text, with its offsets in that text."""

    start: int
    end: int
    text: str
    field_name: str | None


def json_text_leaves(text: str) -> list[TextLeaf] | None:
    """The strings (keys and values) and numbers of a text that is a JSON object or array.

    Detection then sees each value alone with its field name as context, as it does for a JSON
    body, instead of a run of quoted words a model takes for names. None when the text is not
    JSON. A string with escapes is one leaf whose spans cover the whole string.
    """
    import json

    stripped = text.strip()
    if not stripped or stripped[0] not in "{[" or stripped[-1] not in "}]":
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(value, dict | list):
        return None
    leaves: list[TextLeaf] = []
    last_key: str | None = None
    for m in _TOKEN.finditer(text):
        if m.group(3) is not None:
            leaves.append(TextLeaf(m.start(3), m.end(3), m.group(3), last_key))
            continue
        content = m.group(1)
        if m.group(2):  # a key
            last_key = content
            leaves.append(TextLeaf(m.start(1), m.end(1), content, None))
        else:
            leaves.append(TextLeaf(m.start(1), m.end(1), content, last_key))
    return leaves
