"""How a detected value is transformed: redact, typed placeholder, mask, keyed hash, encrypt.

Each operator becomes a Presidio ``custom`` operator (a function of the value) built per
request, so placeholders are consistent within one request only and keys never outlive it.
Keys are passed in by the caller as bytes (from the key store); nothing here stores them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secure_aiaas.errors import CryptoError, PrivacyError

OPERATORS = ("redact", "placeholder", "mask", "hash", "encrypt")
_ENC_TOKEN = re.compile(r"<([A-Z][A-Z0-9_]*):enc:([A-Za-z0-9_-]+)>")


@dataclass(frozen=True)
class TenantKeys:
    """Per-tenant key material for the keyed operators (bytes from the caller's key store)."""

    hash_key: bytes | None = None
    encryption_key: bytes | None = None  # AES-256-GCM: 32 bytes


class RequestOperators:
    """Operator functions for one request; placeholders numbered per (type, value)."""

    def __init__(self, tenant: str, keys: TenantKeys | None) -> None:
        self._tenant = tenant
        self._keys = keys or TenantKeys()
        self._numbers: dict[tuple[str, str], int] = {}
        self._counters: dict[str, int] = {}
        self._values: dict[str, str] = {}  # placeholder -> first original spelling

    def placeholders(self) -> PlaceholderMap:
        """The placeholders given out so far and the values they stand for (trusted code only)."""
        return PlaceholderMap(dict(self._values))

    def function(
        self, operator: str, entity_type: str, mask_char: str = "*"
    ) -> Callable[[str], str]:
        """The value → replacement function for an operator and entity type."""
        if operator == "redact":
            return lambda _value: f"<{entity_type}>"
        if operator == "placeholder":
            return lambda value: self._placeholder(entity_type, value)
        if operator == "mask":
            return lambda value: re.sub(r"[^\s\-./@]", mask_char, value)
        if operator == "hash":
            key = self._require(self._keys.hash_key, "hash")
            return lambda value: f"<{entity_type}:{keyed_hash(key, self._tenant, value)}>"
        if operator == "encrypt":
            key = self._require(self._keys.encryption_key, "encrypt")
            return lambda value: encrypt_token(key, self._tenant, entity_type, value)
        raise PrivacyError(code="privacy_unknown_operator")

    def _placeholder(self, entity_type: str, value: str) -> str:
        key = (entity_type, value.casefold())
        if key not in self._numbers:
            self._counters[entity_type] = self._counters.get(entity_type, 0) + 1
            self._numbers[key] = self._counters[entity_type]
        placeholder = f"<{entity_type}_{self._numbers[key]}>"
        self._values.setdefault(placeholder, value)
        return placeholder

    @staticmethod
    def _require(key: bytes | None, operator: str) -> bytes:
        if not key:
            # Fail closed: a profile that asks for a keyed operator never falls back to plaintext.
            raise PrivacyError(code=f"privacy_missing_{operator}_key")
        return key


class PlaceholderMap(Mapping[str, str]):
    """Placeholder (``<PERSON_1>``) -> the original value, for one request or conversation.

    A value for trusted code (the chat pipeline restores names in a model's answer with
    ``restore_placeholders``). It is never stored, logged or audited; its ``repr`` shows the
    placeholders only, so an accidental log line carries no values.
    """

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def __getitem__(self, placeholder: str) -> str:
        return self._values[placeholder]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PlaceholderMap({sorted(self._values)})"

    def restore(self, text: str) -> str:
        """Replace every placeholder of this map in ``text`` by its original value."""
        if not self._values:
            return text
        return _PLACEHOLDER.sub(lambda m: self._values.get(m.group(0), m.group(0)), text)


_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


def keyed_hash(key: bytes, tenant: str, value: str) -> str:
    """HMAC-SHA256 of the value under the tenant's key (16 hex chars: linkable, not reversible)."""
    mac = hmac.new(key, tenant.encode() + b"\x00" + value.encode(), hashlib.sha256)
    return mac.hexdigest()[:16]


def encrypt_token(key: bytes, tenant: str, entity_type: str, value: str) -> str:
    """``<TYPE:enc:…>``: AES-GCM of the value, bound to tenant and type, random nonce."""
    if len(key) not in (16, 24, 32):
        raise PrivacyError(code="privacy_bad_encryption_key")
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, value.encode(), _aad(tenant, entity_type))
    return f"<{entity_type}:enc:{base64.urlsafe_b64encode(nonce + ct).decode().rstrip('=')}>"


def restore(text: str, *, key: bytes, tenant: str) -> str:
    """Replace every ``<TYPE:enc:…>`` token in ``text`` by its value (the tenant's key only).

    Raises:
        CryptoError: a token does not decrypt under this key and tenant.
    """

    def _one(m: re.Match[str]) -> str:
        raw = base64.urlsafe_b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4))
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], _aad(tenant, m.group(1))).decode()
        except (InvalidTag, ValueError) as exc:
            raise CryptoError() from exc

    return _ENC_TOKEN.sub(_one, text)


def _aad(tenant: str, entity_type: str) -> bytes:
    return f"secure_aiaas/privacy/v1|{tenant}|{entity_type}".encode()
