"""Compact binary framing for HE traffic, shared by the server and the SDK (pure Python).

Three layers, all parsed here before any native code sees a byte:

* the frame of an inference request/response (`encode_request` / `decode_request`, ...);
* TenSEAL's ``CKKSVectorProto`` (sizes, ciphertexts, scale), which wraps each SEAL ciphertext;
* TenSEAL's ``TenSEALContextProto``, which carries a public context (parameters, relin and
  Galois keys).

TenSEAL 0.3.18 crashes or over-reads on malformed vector messages (empty size list, sizes
above the slot count, thousands of chunks), so the decoders check counts and sizes against
explicit limits and raise `CiphertextError` / `PayloadTooLargeError` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass, field

from secure_aiaas.errors import CiphertextError, PayloadTooLargeError

REQUEST_MAGIC = b"SAHQ"
RESPONSE_MAGIC = b"SAHR"
WIRE_VERSION = 1
PACKING_SINGLE = 0
PACKING_BATCHED = 1
PACKINGS = {"single": PACKING_SINGLE, "batched": PACKING_BATCHED}
CONTENT_TYPE = "application/vnd.saiaas.he+octet-stream"

# magic, version, packing, reserved, n_samples, n_ciphertexts, digest, context-id length.
# The digest (BLAKE2b-128 over the ciphertext section) catches corruption in transit: SEAL
# would accept most flipped bits as a valid ciphertext and return garbage.
_HEADER = struct.Struct("<4sBBHII16sH")
_RESP_HEADER = struct.Struct("<4sBBHII16s")
_LEN = struct.Struct("<I")
_SEAL_MAGIC = 0xA15E


# --------------------------------------------------------------------------- protobuf
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise CiphertextError("truncated message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    raise CiphertextError("malformed varint")


def parse_fields(buf: bytes, max_fields: int) -> list[tuple[int, int, int | bytes]]:
    """Decode one protobuf message level into (field, wire type, value) without recursion."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        if len(fields) >= max_fields:
            raise CiphertextError("too many fields in message")
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CiphertextError("malformed message")
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            fields.append((number, wire, value))
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise CiphertextError("truncated message")
            fields.append((number, wire, buf[pos : pos + width]))
            pos += width
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if length > len(buf) - pos:
                raise CiphertextError("truncated message")
            fields.append((number, wire, buf[pos : pos + length]))
            pos += length
        else:
            raise CiphertextError("unsupported protobuf wire type")
    return fields


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


# --------------------------------------------------------------------------- vectors
@dataclass(frozen=True)
class VectorMessage:
    """A decoded ``CKKSVectorProto``: one size per chunk, one SEAL ciphertext per chunk."""

    sizes: tuple[int, ...]
    ciphertexts: tuple[bytes, ...]
    scale: float


def encode_vector(sizes: list[int], ciphertexts: list[bytes], scale: float) -> bytes:
    """Serialise a ``CKKSVectorProto`` (the format `tenseal.ckks_vector_from` reads)."""
    packed = b"".join(_varint(s) for s in sizes)
    out = bytearray(_bytes_field(1, packed))
    for ct in ciphertexts:
        out += _bytes_field(2, ct)
    out += _varint(3 << 3 | 1) + struct.pack("<d", scale)
    return bytes(out)


def decode_vector(
    data: bytes, *, slots: int, max_chunks: int = 1, max_ciphertext_bytes: int = 2 << 20
) -> VectorMessage:
    """Decode and check a ``CKKSVectorProto`` before anything native reads it."""
    if not data:
        raise CiphertextError("empty ciphertext")
    sizes: list[int] = []
    cts: list[bytes] = []
    scale: float | None = None
    for number, wire, value in parse_fields(data, max_fields=2 * max_chunks + 8):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            pos = 0
            while pos < len(value):
                size, pos = _read_varint(value, pos)
                sizes.append(size)
        elif number == 1 and wire == 0 and isinstance(value, int):
            sizes.append(value)
        elif number == 2 and wire == 2 and isinstance(value, bytes):
            cts.append(value)
        elif number == 3 and wire == 1 and isinstance(value, bytes):
            scale = struct.unpack("<d", value)[0]
        else:
            raise CiphertextError("unexpected field in vector message")
        if len(sizes) > max_chunks or len(cts) > max_chunks:
            raise CiphertextError("too many ciphertext chunks")
    if not sizes or len(sizes) != len(cts):
        raise CiphertextError("vector sizes do not match its ciphertexts")
    if any(not 0 < s <= slots for s in sizes):
        raise CiphertextError("vector size out of range for the slot count")
    if scale is None or not math.isfinite(scale) or scale <= 0:
        raise CiphertextError("invalid scale")
    for ct in cts:
        check_seal_header(ct, max_bytes=max_ciphertext_bytes)
    return VectorMessage(tuple(sizes), tuple(cts), scale)


def check_seal_header(blob: bytes, *, max_bytes: int) -> None:
    """Check a SEAL serialisation header: magic, header size, declared size == actual size."""
    if len(blob) > max_bytes:
        raise PayloadTooLargeError("ciphertext too large")
    if len(blob) < 16:
        raise CiphertextError("truncated SEAL object")
    magic, header_size, major, _minor, compr, _reserved, size = struct.unpack("<HBBBBHQ", blob[:16])
    if magic != _SEAL_MAGIC or header_size != 16 or major != 4:
        raise CiphertextError("not a SEAL 4 object")
    if compr > 2:
        raise CiphertextError("unknown SEAL compression mode")
    if size != len(blob):
        raise CiphertextError("SEAL object size does not match its header")


# --------------------------------------------------------------------------- contexts
@dataclass
class PublicContextMessage:
    """The parts of a ``TenSEALContextProto`` the server uses; secrets are never kept."""

    encryption_parameters: bytes
    relin_keys: bytes
    galois_keys: bytes
    scale: float
    has_secret_key: bool = False
    has_public_key: bool = False
    extra: dict[str, int] = field(default_factory=dict)


def encode_public_context(
    encryption_parameters: bytes, relin_keys: bytes, galois_keys: bytes, scale: float
) -> bytes:
    """Serialise a public ``TenSEALContextProto`` (no public key: the server never encrypts)."""
    public = (
        _varint(3 << 3 | 1)
        + struct.pack("<d", scale)
        + _bytes_field(4, relin_keys)
        + (_bytes_field(5, galois_keys) if galois_keys else b"")
    )
    # encryption_type 1 = asymmetric in TenSEAL's enum; kept for format compatibility.
    return (
        _bytes_field(1, encryption_parameters)
        + _bytes_field(2, public)
        + _varint(4 << 3)
        + _varint(1)
    )


def decode_public_context(data: bytes, *, max_bytes: int) -> PublicContextMessage:
    """Decode a ``TenSEALContextProto``; refuse one that carries a secret key."""
    if len(data) > max_bytes:
        raise PayloadTooLargeError("context too large")
    if not data:
        raise CiphertextError("empty context")
    parms = b""
    public = b""
    has_secret = False
    for number, wire, value in parse_fields(data, max_fields=8):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            parms = value
        elif number == 2 and wire == 2 and isinstance(value, bytes):
            public = value
        elif number == 3:
            has_secret = True
        elif number == 4 and wire == 0:
            pass
        else:
            raise CiphertextError("unexpected field in context message")
    msg = PublicContextMessage(parms, b"", b"", 0.0, has_secret_key=has_secret)
    for number, wire, value in parse_fields(public, max_fields=8):
        if number == 1 and isinstance(value, bytes):
            msg.has_public_key = bool(value)
        elif number == 3 and wire == 1 and isinstance(value, bytes):
            msg.scale = struct.unpack("<d", value)[0]
        elif number == 4 and isinstance(value, bytes):
            msg.relin_keys = value
        elif number == 5 and isinstance(value, bytes):
            msg.galois_keys = value
        elif number == 2 and wire == 0:
            pass
        else:
            raise CiphertextError("unexpected field in public context")
    if msg.has_secret_key:
        raise CiphertextError("context holds a secret key; upload the public context only")
    if not msg.encryption_parameters:
        raise CiphertextError("context lacks encryption parameters")
    if not msg.relin_keys:
        raise CiphertextError("context lacks relinearisation keys")
    for blob in (msg.encryption_parameters, msg.relin_keys, msg.galois_keys):
        if blob:
            check_seal_header(blob, max_bytes=max_bytes)
    return msg


# --------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class InferenceRequest:
    """An inference request: which context, which packing, how many samples, the vectors."""

    context_id: str
    packing: str
    n_samples: int
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class InferenceResponse:
    packing: str
    n_samples: int
    ciphertexts: tuple[bytes, ...]


def _encode_blobs(blobs: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(b)) + b for b in blobs)


def _digest(section: bytes | memoryview) -> bytes:
    return hashlib.blake2b(section, digest_size=16).digest()


def _check_digest(data: bytes, start: int, expected: bytes) -> None:
    if not hmac.compare_digest(_digest(memoryview(data)[start:]), expected):
        raise CiphertextError("frame digest mismatch (corrupted in transit)")


def _decode_blobs(data: bytes, pos: int, count: int, max_blob: int) -> tuple[bytes, ...]:
    blobs = []
    for _ in range(count):
        if pos + 4 > len(data):
            raise CiphertextError("truncated frame")
        (length,) = _LEN.unpack_from(data, pos)
        pos += 4
        if length > max_blob:
            raise PayloadTooLargeError("ciphertext too large")
        if pos + length > len(data):
            raise CiphertextError("truncated frame")
        blobs.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise CiphertextError("trailing bytes after frame")
    return tuple(blobs)


def _packing_code(packing: str) -> int:
    if packing not in PACKINGS:
        raise CiphertextError("unknown packing")
    return PACKINGS[packing]


def _packing_name(code: int) -> str:
    for name, value in PACKINGS.items():
        if value == code:
            return name
    raise CiphertextError("unknown packing")


def encode_request(request: InferenceRequest) -> bytes:
    ctx = request.context_id.encode("ascii")
    section = _encode_blobs(request.ciphertexts)
    header = _HEADER.pack(
        REQUEST_MAGIC,
        WIRE_VERSION,
        _packing_code(request.packing),
        0,
        request.n_samples,
        len(request.ciphertexts),
        _digest(section),
        len(ctx),
    )
    return header + ctx + section


def decode_request(
    data: bytes, *, max_body: int, max_ciphertexts: int, max_ciphertext_bytes: int
) -> InferenceRequest:
    """Decode a request frame; sizes are checked before any blob is copied."""
    if len(data) > max_body:
        raise PayloadTooLargeError()
    if len(data) < _HEADER.size:
        raise CiphertextError("truncated frame")
    magic, version, packing, _r, n_samples, n_cts, digest, ctx_len = _HEADER.unpack_from(data)
    if magic != REQUEST_MAGIC or version != WIRE_VERSION:
        raise CiphertextError("not an HE request frame")
    if not 0 < n_cts <= max_ciphertexts:
        raise CiphertextError("ciphertext count out of range")
    if n_samples == 0:
        raise CiphertextError("no samples")
    end = _HEADER.size + ctx_len
    try:
        context_id = data[_HEADER.size : end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise CiphertextError("malformed context id") from exc
    blobs = _decode_blobs(data, end, n_cts, max_ciphertext_bytes)
    _check_digest(data, end, digest)
    return InferenceRequest(context_id, _packing_name(packing), n_samples, blobs)


def encode_response(response: InferenceResponse) -> bytes:
    section = _encode_blobs(response.ciphertexts)
    header = _RESP_HEADER.pack(
        RESPONSE_MAGIC,
        WIRE_VERSION,
        _packing_code(response.packing),
        0,
        response.n_samples,
        len(response.ciphertexts),
        _digest(section),
    )
    return header + section


def decode_response(data: bytes, *, max_ciphertext_bytes: int = 8 << 20) -> InferenceResponse:
    if len(data) < _RESP_HEADER.size:
        raise CiphertextError("truncated frame")
    magic, version, packing, _r, n_samples, n_cts, digest = _RESP_HEADER.unpack_from(data)
    if magic != RESPONSE_MAGIC or version != WIRE_VERSION:
        raise CiphertextError("not an HE response frame")
    blobs = _decode_blobs(data, _RESP_HEADER.size, n_cts, max_ciphertext_bytes)
    _check_digest(data, _RESP_HEADER.size, digest)
    return InferenceResponse(_packing_name(packing), n_samples, blobs)
