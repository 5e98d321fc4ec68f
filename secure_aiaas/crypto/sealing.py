"""Encryption at rest: AES-256-GCM under the server's data key, bound to what it belongs to.

``seal(key, data, aad)`` returns ``nonce || ciphertext+tag``; the associated data (e.g. a
context id) makes a blob copied under another record's name fail to open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secure_aiaas.errors import CryptoError

NONCE_BYTES = 12


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise CryptoError("sealed blob too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise CryptoError("sealed blob failed authentication") from exc
