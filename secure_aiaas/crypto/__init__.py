"""Key material and cryptographic policy (key store, HE wire/parameter rules)."""

from secure_aiaas.crypto.keystore import ServerKeys, init_keys, load_keys

__all__ = ["ServerKeys", "init_keys", "load_keys"]
