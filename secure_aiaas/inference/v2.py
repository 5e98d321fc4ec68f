"""KServe Open Inference Protocol v2: pure validation and conversion, so routes stay thin.

`parse_infer_request` checks a ``{"inputs": [{"name", "shape", "datatype", "data"}]}`` body
against a manifest and returns numpy arrays (or a list of strings for BYTES); every refusal is
an `InputError` whose message names the field, e.g.
``inputs[0].shape: expected [-1, 64], got [3]``. Messages never quote user data.
`build_infer_response` and `model_metadata` build the replies. No torch here.

The binary tensor extension (what `tritonclient` sends by default) is supported:
`decode_infer_body` splits a body at its ``Inference-Header-Content-Length``; inputs with
``parameters.binary_data_size`` read raw little-endian bytes (BYTES: 4-byte length prefixes);
`encode_infer_response` returns binary outputs where the request asked for them.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from secure_aiaas.errors import InputError
from secure_aiaas.inference.manifest import Manifest, TensorSpec

MAX_ELEMENTS = 1 << 20
MAX_TEXT_CHARS = 16_384
MAX_TEXTS = 2048

_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
# numpy dtype kinds a JSON array may parse to, per declared datatype family.
_KINDS = {"FP": "iuf", "INT": "iu", "UINT": "iu", "BOOL": "b"}


@dataclass(frozen=True)
class InferRequest:
    """A validated v2 request: one array per manifest input, plus what the reply needs."""

    inputs: dict[str, Any]
    rows: int
    request_id: str | None
    requested_outputs: list[str] | None
    # Outputs the client wants as raw bytes (binary tensor extension).
    binary_outputs: frozenset[str] = frozenset()

    @property
    def single(self) -> Any:
        """The one input (manifests declare exactly one)."""
        return next(iter(self.inputs.values()))


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _parse_shape(raw: object, spec: TensorSpec, where: str, max_batch: int) -> list[int]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in raw
    ):
        raise InputError(f"{where}.shape: expected a list of integers")
    if len(raw) != len(spec.shape) or any(
        want != -1 and want != got for want, got in zip(spec.shape, raw, strict=False)
    ):
        # Only echo the client's shape when it is short: it is structure, not data.
        got = _shape_text(raw) if len(raw) <= 8 else f"{len(raw)} dims"
        raise InputError(f"{where}.shape: expected {_shape_text(spec.shape)}, got {got}")
    if any(d < 1 for d in raw):
        raise InputError(f"{where}.shape: dims must be positive")
    if raw[0] > max_batch:
        raise InputError(f"{where}.shape: batch size {raw[0]} exceeds the maximum {max_batch}")
    if math.prod(raw) > MAX_ELEMENTS:
        raise InputError(f"{where}.shape: more than {MAX_ELEMENTS} elements")
    return raw


def _parse_numeric(data: object, spec: TensorSpec, shape: list[int], where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise InputError(f"{where}.data: expected a list of numbers")
    try:
        array = np.asarray(data)  # C speed; strings, None or ragged lists give the wrong kind
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"{where}.data: expected a flat or regularly nested list") from None
    family = spec.datatype.rstrip("0123456789")
    if array.dtype.kind not in _KINDS[family] or (array.size == 0 and math.prod(shape) > 0):
        kind = "booleans" if family == "BOOL" else "integers" if "INT" in family else "numbers"
        raise InputError(f"{where}.data: expected {kind} for datatype {spec.datatype}")
    expected = math.prod(shape)
    if array.size != expected:
        raise InputError(
            f"{where}.data: expected {expected} values for shape {_shape_text(shape)}, "
            f"got {array.size}"
        )
    dtype = _NUMPY[spec.datatype]
    if family == "FP":
        with np.errstate(over="ignore", invalid="ignore"):  # out-of-range -> inf, refused below
            array = array.astype(dtype, copy=False)
        if not np.isfinite(array).all():
            raise InputError(f"{where}.data: values must be finite (in range for {spec.datatype})")
    else:
        info = np.iinfo(dtype) if family != "BOOL" else None
        if info is not None and array.size and (array.min() < info.min or array.max() > info.max):
            raise InputError(f"{where}.data: values out of range for {spec.datatype}")
        array = array.astype(dtype, copy=False)
    return np.ascontiguousarray(array.reshape(shape))


def _parse_bytes(data: object, shape: list[int], where: str) -> list[str]:
    if len(shape) != 1:
        raise InputError(f"{where}.shape: BYTES inputs are one-dimensional")
    texts = coerce_texts(data, f"{where}.data", allow_single=False)
    if len(texts) != shape[0]:
        raise InputError(
            f"{where}.data: expected {shape[0]} values for shape {_shape_text(shape)}, "
            f"got {len(texts)}"
        )
    return texts


def parse_infer_request(
    body: object,
    manifest: Manifest,
    *,
    max_batch: int = 1024,
    binary: bytes = b"",
    max_elements: int = MAX_ELEMENTS,
) -> InferRequest:
    """Validate a v2 infer body against `manifest`.

    Args:
        body: the decoded JSON body.
        manifest: the target model.
        max_batch: the largest batch dim accepted (the batcher's ``max_batch_size``).
        binary: the bytes after the JSON header (`decode_infer_body`), if any.
        max_elements: the most tensor elements all inputs together may hold.

    Raises:
        InputError: naming the offending field.
    """
    if not isinstance(body, Mapping):
        raise InputError("body: expected a JSON object")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError("inputs: expected a non-empty list")
    specs = {s.name: s for s in manifest.inputs}
    cursor = 0
    elements = 0
    parsed: dict[str, Any] = {}
    rows: int | None = None
    for index, raw in enumerate(raw_inputs):
        where = f"inputs[{index}]"
        if not isinstance(raw, Mapping):
            raise InputError(f"{where}: expected an object")
        name = raw.get("name")
        if not isinstance(name, str) or name not in specs:
            raise InputError(f"{where}.name: expected one of {sorted(specs)}")
        if name in parsed:
            raise InputError(f"{where}.name: input {name!r} given twice")
        spec = specs[name]
        if raw.get("datatype") != spec.datatype:
            raise InputError(f"{where}.datatype: expected {spec.datatype}")
        params = raw.get("parameters", {})
        if not isinstance(params, Mapping):
            raise InputError(f"{where}.parameters: expected an object")
        shape = _parse_shape(raw.get("shape"), spec, where, max_batch)
        elements += math.prod(shape)
        if elements > max_elements:
            raise InputError(f"{where}.shape: more than {max_elements} elements in the request")
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InputError(f"{where}.parameters.binary_data_size: expected an integer >= 0")
            if "data" in raw:
                raise InputError(f"{where}.data: not allowed with binary_data_size")
            if cursor + size > len(binary):
                raise InputError(f"{where}.parameters.binary_data_size: beyond the binary data")
            chunk = binary[cursor : cursor + size]
            cursor += size
            parsed[name] = _parse_binary(chunk, spec, shape, where)
        elif spec.datatype == "BYTES":
            parsed[name] = _parse_bytes(raw.get("data"), shape, where)
        else:
            parsed[name] = _parse_numeric(raw.get("data"), spec, shape, where)
        if rows is not None and shape[0] != rows:
            raise InputError(f"{where}.shape: batch size differs from the other inputs")
        rows = shape[0]
    missing = sorted(set(specs) - set(parsed))
    if missing:
        raise InputError(f"inputs: missing {missing}")
    if cursor != len(binary):
        raise InputError("body: binary data longer than the inputs' binary_data_size")
    requested, binary_outputs = _requested_outputs(body, manifest)
    return InferRequest(
        inputs=parsed,
        rows=rows or 0,
        request_id=_request_id(body.get("id")),
        requested_outputs=requested,
        binary_outputs=binary_outputs,
    )


def _request_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise InputError("id: expected a string of at most 128 characters")
    return value


def _requested_outputs(
    body: Mapping[str, Any], manifest: Manifest
) -> tuple[list[str] | None, frozenset[str]]:
    known = [o.name for o in manifest.outputs]
    params = body.get("parameters", {})
    if not isinstance(params, Mapping):
        raise InputError("parameters: expected an object")
    all_binary = params.get("binary_data_output") is True
    value = body.get("outputs")
    if value is None:
        return None, frozenset(known) if all_binary else frozenset()
    if not isinstance(value, list):
        raise InputError("outputs: expected a list")
    names: list[str] = []
    binary: set[str] = set()
    for index, item in enumerate(value):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or name not in known:
            raise InputError(f"outputs[{index}].name: expected one of {known}")
        out_params = item.get("parameters", {})
        if not isinstance(out_params, Mapping):
            raise InputError(f"outputs[{index}].parameters: expected an object")
        if out_params.get("binary_data", all_binary) is True:
            binary.add(name)
        names.append(name)
    return names, frozenset(binary)


def _parse_binary(chunk: bytes, spec: TensorSpec, shape: list[int], where: str) -> Any:
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        texts: list[str] = []
        offset = 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise InputError(f"{where}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", chunk, offset)
            element = chunk[offset + 4 : offset + 4 + length]
            if len(element) != length:
                raise InputError(f"{where}: truncated BYTES element")
            try:
                texts.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(f"{where}: BYTES elements must be UTF-8 text") from None
            offset += 4 + length
        return _parse_bytes(texts, shape, where)
    dtype = np.dtype(_NUMPY[spec.datatype]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise InputError(
            f"{where}.parameters.binary_data_size: expected {count * dtype.itemsize} bytes "
            f"for shape {_shape_text(shape)}, got {len(chunk)}"
        )
    array = np.frombuffer(chunk, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if spec.datatype.startswith("FP") and not np.isfinite(array).all():
        raise InputError(f"{where}.data: values must be finite")
    return np.ascontiguousarray(array)


def split_infer_body(raw: bytes, header_length: int | str | None = None) -> tuple[bytes, bytes]:
    """Split a request body into (JSON bytes, binary tail) at ``Inference-Header-Content-Length``.

    Raises:
        InputError: a header length that is not an integer or lies outside the body.
    """
    if header_length is None:
        return raw, b""
    try:
        length = int(header_length)
    except ValueError:
        raise InputError("Inference-Header-Content-Length: expected an integer") from None
    if not 0 <= length <= len(raw):
        raise InputError("Inference-Header-Content-Length: outside the body")
    return raw[:length], raw[length:]


def decode_infer_body(raw: bytes, header_length: int | str | None = None) -> tuple[object, bytes]:
    """Split a request body into (JSON object, binary tail).

    Args:
        raw: the HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header, if present.

    Raises:
        InputError: a bad header length or JSON that does not parse.
    """
    if header_length is None:
        json_part, tail = raw, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise InputError("Inference-Header-Content-Length: expected an integer") from None
        if not 0 <= length <= len(raw):
            raise InputError("Inference-Header-Content-Length: outside the body")
        json_part, tail = raw[:length], raw[length:]
    try:
        return json.loads(json_part), tail
    except (ValueError, UnicodeDecodeError):
        raise InputError("body: not valid JSON") from None


def encode_infer_response(
    manifest: Manifest, outputs: Mapping[str, np.ndarray], request: InferRequest
) -> tuple[bytes, int | None]:
    """The reply body, and the JSON header length when any output is binary (else None).

    The route sends ``Inference-Header-Content-Length`` with that length and
    ``application/octet-stream``; without binary outputs the body is plain JSON.
    """
    reply, tail = _build(
        manifest, outputs, request.request_id, request.requested_outputs, request.binary_outputs
    )
    header = json.dumps(reply, separators=(",", ":")).encode()
    if not request.binary_outputs:
        return header, None
    return header + b"".join(tail), len(header)


def build_infer_response(
    manifest: Manifest,
    outputs: Mapping[str, np.ndarray],
    *,
    request_id: str | None = None,
    requested_outputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The v2 JSON reply: ``{"model_name", "model_version", "outputs": [...]}`` (flat data)."""
    return _build(manifest, outputs, request_id, requested_outputs, frozenset())[0]


def _build(
    manifest: Manifest,
    outputs: Mapping[str, np.ndarray],
    request_id: str | None,
    requested_outputs: Sequence[str] | None,
    binary_outputs: frozenset[str],
) -> tuple[dict[str, Any], list[bytes]]:
    wanted = requested_outputs or [o.name for o in manifest.outputs]
    specs = {o.name: o for o in manifest.outputs}
    entries: list[dict[str, Any]] = []
    tail: list[bytes] = []
    for name in wanted:
        spec = specs[name]
        array = np.asarray(outputs[name], dtype=_NUMPY.get(spec.datatype))
        entry: dict[str, Any] = {
            "name": name,
            "datatype": spec.datatype,
            "shape": list(array.shape),
        }
        if name in binary_outputs:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            tail.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    reply: dict[str, Any] = {
        "model_name": manifest.name,
        "model_version": manifest.version,
        "outputs": entries,
    }
    if request_id is not None:
        reply["id"] = request_id
    return reply, tail


def model_metadata(manifest: Manifest, versions: Sequence[str] | None = None) -> dict[str, Any]:
    """``GET /v2/models/{name}[/versions/{v}]``."""
    return {
        "name": manifest.name,
        "versions": list(versions) if versions else [manifest.version],
        "platform": "pytorch_torchscript" if manifest.format == "torchscript" else "pytorch",
        "inputs": [spec.model_dump() for spec in manifest.inputs],
        "outputs": [spec.model_dump() for spec in manifest.outputs],
    }


def coerce_texts(value: object, field: str = "input", *, allow_single: bool = True) -> list[str]:
    """OpenAI-style ``input`` (a string or a non-empty list of strings) -> list of strings.

    Raises:
        InputError: naming `field` (and the index); the message never quotes the text.
    """
    texts = [value] if allow_single and isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        expected = "a string or a non-empty list" if allow_single else "a non-empty list"
        raise InputError(f"{field}: expected {expected} of strings")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"{field}: at most {MAX_TEXTS} texts per request, got {len(texts)}")
    for index, text in enumerate(texts):
        where = field if texts is not value else f"{field}[{index}]"
        if not isinstance(text, str):
            raise InputError(f"{where}: expected a string")
        if not text.strip():
            raise InputError(f"{where}: must not be empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"{where}: at most {MAX_TEXT_CHARS} characters, got {len(text)}")
    return texts
