"""Client-side CKKS: the only place a secret key exists.

`SecretContext.create(plan)` builds a SEAL context matching the model's published plan,
generates the keys (Galois keys only for the plan's rotation steps, everything serialised
seed-compressed), encrypts for either packing and decrypts results. The secret context can be
saved encrypted under a passphrase (scrypt + AES-GCM). No server module, no torch.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from tenseal import sealapi as sa  # type: ignore[import-untyped, unused-ignore]

from secure_aiaas.crypto.he_params import (
    CKKSParams,
    build_seal_context,
    galois_element,
    seal_load,
    seal_save,
)
from secure_aiaas.crypto.he_wire import decode_vector, encode_public_context, encode_vector
from secure_aiaas.errors import CiphertextError, CryptoError, InputError

_FILE_VERSION = 1
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


@dataclass(frozen=True)
class PlanView:
    """The client's reading of a published plan (the JSON from ``GET /v1/he/models/{name}``)."""

    model: str
    fingerprint: str
    params: CKKSParams
    input_dim: int
    output_dim: int
    output: str
    single: dict[str, Any] | None
    batched: dict[str, Any]
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> PlanView:
        data = text if isinstance(text, dict) else json.loads(text)
        try:
            return cls(
                model=str(data["model"]),
                fingerprint=str(data["fingerprint"]),
                params=CKKSParams.from_dict(data["params"]),
                input_dim=int(data["input_dim"]),
                output_dim=int(data["output_dim"]),
                output=str(data["output"]),
                single=data.get("single"),
                batched=dict(data["batched"]),
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError("malformed HE plan") from exc

    @property
    def galois_steps(self) -> list[int]:
        return [int(s) for s in self.single["galois_steps"]] if self.single else []


class SecretContext:
    """Keys and codecs for one model plan. Holds the secret key: never send this object."""

    def __init__(self, plan: PlanView, secret_key: Any | None = None) -> None:
        self.plan = plan
        self.context = build_seal_context(plan.params)
        keygen = (
            sa.KeyGenerator(self.context)
            if secret_key is None
            else sa.KeyGenerator(self.context, secret_key)
        )
        self._secret_key = keygen.secret_key()
        self._keygen = keygen
        self.encoder = sa.CKKSEncoder(self.context)
        # Symmetric encryption: the ciphertext's second polynomial is replaced by a seed,
        # which halves every upload.
        self.encryptor = sa.Encryptor(self.context, self._secret_key)
        self.decryptor = sa.Decryptor(self.context, self._secret_key)
        self.context_id: str | None = None

    @classmethod
    def create(cls, plan: PlanView | str | dict[str, Any]) -> SecretContext:
        return cls(plan if isinstance(plan, PlanView) else PlanView.from_json(plan))

    # ------------------------------------------------------------------ keys
    def public_context(self) -> bytes:
        """Evaluation keys for the server: relin + the plan's Galois keys, seed-compressed."""
        parms = self.context.key_context_data().parms()
        relin = seal_save(self._keygen.create_relin_keys())
        galois = b""
        if self.plan.galois_steps:
            degree = self.plan.params.poly_modulus_degree
            # Pass Galois elements, not steps: the binding's first overload takes elements.
            elements = [galois_element(s, degree) for s in self.plan.galois_steps]
            galois = seal_save(self._keygen.create_galois_keys(elements))
        return encode_public_context(seal_save(parms), relin, galois, self.plan.params.scale)

    # ------------------------------------------------------------------ encode
    def _encrypt(self, values: np.ndarray, size: int) -> bytes:
        plain = sa.Plaintext()
        self.encoder.encode(
            [float(v) for v in values], self.context.first_parms_id(), self.plan.params.scale, plain
        )
        blob = seal_save(self.encryptor.encrypt_symmetric(plain))
        return encode_vector([size], [blob], self.plan.params.scale)

    def _check_inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.plan.input_dim:
            raise InputError(f"expected {self.plan.input_dim} features per sample")
        if not np.isfinite(x).all():
            raise InputError("inputs must be finite")
        return x

    def encrypt_single(self, x: np.ndarray) -> list[bytes]:
        """One ciphertext per sample, features replicated as the plan's layout says."""
        if self.plan.single is None:
            raise InputError("this model offers only the batched packing")
        x = self._check_inputs(x)
        slots = self.plan.params.slots
        period, rep = int(self.plan.single["input_period"]), int(self.plan.single["input_repeat"])
        idx = (np.arange(slots) % period) // rep
        valid = idx < x.shape[1]
        out = []
        for row in x:
            padded = np.where(valid, row[np.minimum(idx, x.shape[1] - 1)], 0.0)
            out.append(self._encrypt(padded, slots))
        return out

    def encrypt_batched(self, x: np.ndarray) -> list[list[bytes]]:
        """Per batch of up to `slots` samples: one ciphertext per feature."""
        x = self._check_inputs(x)
        per = int(self.plan.batched["samples_per_ciphertext"])
        batches = []
        for start in range(0, len(x), per):
            chunk = x[start : start + per]
            batches.append([self._encrypt(chunk[:, j], len(chunk)) for j in range(x.shape[1])])
        return batches

    # ------------------------------------------------------------------ decode
    def _decrypt(self, blob: bytes) -> np.ndarray:
        params = self.plan.params
        msg = decode_vector(blob, slots=params.slots, max_chunks=1, max_ciphertext_bytes=4 << 20)
        try:
            ct = seal_load(sa.Ciphertext(), msg.ciphertexts[0], self.context)
            plain = sa.Plaintext()
            self.decryptor.decrypt(ct, plain)
            values = np.array(self.encoder.decode_double(plain))
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CiphertextError("server returned an invalid ciphertext") from exc
        return values[: msg.sizes[0]]

    def decrypt_single(self, blobs: list[bytes]) -> np.ndarray:
        if self.plan.single is None:
            raise InputError("this model offers only the batched packing")
        slots = np.array(self.plan.single["output_slots"], dtype=np.int64)
        return np.stack([self._decrypt(b)[slots] for b in blobs])

    def decrypt_batched(self, blobs: list[bytes], n_samples: int) -> np.ndarray:
        if len(blobs) != self.plan.output_dim:
            raise CiphertextError("server returned the wrong number of ciphertexts")
        return np.stack([self._decrypt(b)[:n_samples] for b in blobs], axis=1)

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path, passphrase: str) -> None:
        """Write the secret context encrypted under `passphrase` (scrypt -> AES-256-GCM)."""
        salt, nonce = os.urandom(16), os.urandom(12)
        key = Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase.encode())
        header = {
            "version": _FILE_VERSION,
            "plan": self.plan.raw,
            "context_id": self.context_id,
            "kdf": {"name": "scrypt", **_SCRYPT, "salt": base64.b64encode(salt).decode()},
            "nonce": base64.b64encode(nonce).decode(),
        }
        aad = json.dumps(header, sort_keys=True).encode()
        sealed = AESGCM(key).encrypt(nonce, seal_save(self._secret_key), aad)
        body = {"header": header, "secret_key": base64.b64encode(sealed).decode()}
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh)

    @classmethod
    def load(cls, path: str | Path, passphrase: str) -> SecretContext:
        """Read a context written by `save`; a wrong passphrase or any edit -> `CryptoError`."""
        try:
            body = json.loads(Path(path).read_text())
            header = body["header"]
            kdf = header["kdf"]
            key = Scrypt(
                salt=base64.b64decode(kdf["salt"]),
                length=32,
                n=int(kdf["n"]),
                r=int(kdf["r"]),
                p=int(kdf["p"]),
            ).derive(passphrase.encode())
            aad = json.dumps(header, sort_keys=True).encode()
            raw = AESGCM(key).decrypt(
                base64.b64decode(header["nonce"]), base64.b64decode(body["secret_key"]), aad
            )
        except (InvalidTag, KeyError, ValueError, TypeError) as exc:
            raise CryptoError(
                "cannot open the secret context (wrong passphrase or damaged file)"
            ) from exc
        plan = PlanView.from_json(header["plan"])
        context = build_seal_context(plan.params)
        secret = seal_load(sa.SecretKey(), raw, context)
        loaded = cls(plan, secret_key=secret)
        loaded.context_id = header.get("context_id")
        return loaded
