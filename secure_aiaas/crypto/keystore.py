"""Server key material in ``keys/``: creation (0600 files in a 0700 directory) and loading.

The server refuses to start when a key file is group- or world-readable: a key that others
could have read is a key that must be considered leaked.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secure_aiaas.errors import ConfigurationError

APIKEY_HMAC_FILE = "apikey-hmac.key"
AUDIT_SIGNING_FILE = "audit-signing.pem"
DATA_KEY_FILE = "data.key"
KEY_FILES = (APIKEY_HMAC_FILE, AUDIT_SIGNING_FILE, DATA_KEY_FILE)


@dataclass(frozen=True)
class ServerKeys:
    """The server's secrets. Never logged, never serialised into a response."""

    apikey_hmac_key: bytes
    audit_signing_key: Ed25519PrivateKey
    data_key: bytes

    @property
    def audit_public_key(self) -> Ed25519PublicKey:
        return self.audit_signing_key.public_key()

    @property
    def audit_key_id(self) -> str:
        return public_key_id(self.audit_public_key)

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debuggers' reprs
        return f"ServerKeys(audit_key_id={self.audit_key_id!r})"


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable identifier of a signing key: SHA-256 of the raw public key, 16 hex chars."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_secret(path: Path, data: bytes) -> None:
    # O_EXCL: never overwrite an existing key; mode 0600 from the first byte on disk.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def init_keys(keys_dir: Path) -> list[str]:
    """Create the missing server keys; existing ones are kept. Returns the files created."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    created: list[str] = []
    if not (keys_dir / APIKEY_HMAC_FILE).exists():
        _write_secret(keys_dir / APIKEY_HMAC_FILE, secrets.token_bytes(32))
        created.append(APIKEY_HMAC_FILE)
    if not (keys_dir / AUDIT_SIGNING_FILE).exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_secret(keys_dir / AUDIT_SIGNING_FILE, pem)
        created.append(AUDIT_SIGNING_FILE)
    if not (keys_dir / DATA_KEY_FILE).exists():
        _write_secret(keys_dir / DATA_KEY_FILE, secrets.token_bytes(32))
        created.append(DATA_KEY_FILE)
    return created


def check_permissions(keys_dir: Path) -> list[str]:
    """Problems with the key directory's permissions (empty when safe)."""
    problems: list[str] = []
    if not keys_dir.is_dir():
        return [f"{keys_dir}: key directory missing (run `secure-aiaas keys init`)"]
    for name in KEY_FILES:
        path = keys_dir / name
        if not path.exists():
            problems.append(f"{path}: missing (run `secure-aiaas keys init`)")
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path}: mode {mode:04o} is group/world accessible; must be 0600")
    return problems


def load_keys(keys_dir: Path) -> ServerKeys:
    """Load the server keys, refusing unsafe permissions or malformed files."""
    problems = check_permissions(keys_dir)
    if problems:
        raise ConfigurationError("; ".join(problems))
    hmac_key = (keys_dir / APIKEY_HMAC_FILE).read_bytes()
    data_key = (keys_dir / DATA_KEY_FILE).read_bytes()
    if len(hmac_key) != 32 or len(data_key) != 32:
        raise ConfigurationError("key files have the wrong length (expected 32 bytes)")
    try:
        signing = serialization.load_pem_private_key(
            (keys_dir / AUDIT_SIGNING_FILE).read_bytes(), password=None
        )
    except ValueError as exc:
        raise ConfigurationError("audit signing key is not a valid PEM key") from exc
    if not isinstance(signing, Ed25519PrivateKey):
        raise ConfigurationError("audit signing key is not an Ed25519 key")
    return ServerKeys(apikey_hmac_key=hmac_key, audit_signing_key=signing, data_key=data_key)


def known_audit_public_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """The current audit key plus retired ones (``audit-public-*.pem``), by key id.

    A rotated-out key's public half stays here so checkpoints it signed still verify.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    current = keys_dir / AUDIT_SIGNING_FILE
    if current.exists():
        private = serialization.load_pem_private_key(current.read_bytes(), password=None)
        if isinstance(private, Ed25519PrivateKey):
            keys[public_key_id(private.public_key())] = private.public_key()
    for path in sorted(keys_dir.glob("audit-public-*.pem")):
        public = serialization.load_pem_public_key(path.read_bytes())
        if isinstance(public, Ed25519PublicKey):
            keys[public_key_id(public)] = public
    return keys


def derive_tenant_key(data_key: bytes, purpose: str, tenant: str) -> bytes:
    """A 256-bit key for one purpose and one tenant (HKDF-SHA256 from the data key).

    Deriving instead of storing: nothing per tenant to back up or leak, and one tenant's key
    says nothing about another's.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"secure_aiaas/v1",
        info=f"{purpose}/{tenant}".encode(),
    ).derive(data_key)
