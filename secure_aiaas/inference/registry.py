"""Versioned model store: ``<data_dir>/models/<name>/<version>/{manifest.json, weights, ...}``.

Weights are safetensors (rebuilt through a named architecture builder) or TorchScript; nothing
is ever unpickled. Every file the model reads is SHA-256 checked against the manifest at load,
and a mismatch refuses the model. Listing and showing never import torch.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.inference.manifest import Manifest, version_key

if TYPE_CHECKING:
    import torch

    from secure_aiaas.inference.predictor import Predictor

MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _integrity_error(what: str) -> InputError:
    # One code for every integrity failure, so operators can alert on it.
    return InputError(f"{what}: SHA-256 mismatch; model refused", code="integrity_check_failed")


class ModelRegistry:
    """The models under one data directory."""

    def __init__(self, data_dir: Path | str) -> None:
        self.root = Path(data_dir) / "models"

    # -- reading ------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Versions of `name`, oldest first (numeric order)."""
        directory = self._name_dir(name)
        if not directory.is_dir():
            return []
        found = [
            p.name
            for p in directory.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        ]
        return sorted((v for v in found if _valid_version(v)), key=version_key)

    def list(self) -> list[Manifest]:
        """Every registered version of every model."""
        return [self.show(n, v) for n in self.names() for v in self.versions(n)]

    def resolve(self, name: str, version: str | None = None) -> str:
        """`version`, or the latest one when None; NotFoundError if absent."""
        versions = self.versions(name)
        if version is None:
            if not versions:
                raise NotFoundError("model not found")
            return versions[-1]
        if version not in versions:
            raise NotFoundError("model version not found")
        return version

    def path(self, name: str, version: str | None = None) -> Path:
        """The version directory (manifest, weights, curve)."""
        return self._name_dir(name) / self.resolve(name, version)

    def show(self, name: str, version: str | None = None) -> Manifest:
        """The manifest of `name` (latest version unless given)."""
        directory = self.path(name, version)
        try:
            manifest = Manifest.model_validate_json((directory / MANIFEST).read_bytes())
        except ValidationError as exc:
            raise InputError(
                f"{name}: manifest.json is invalid ({exc.error_count()} errors)"
            ) from exc
        if (manifest.name, manifest.version) != (name, directory.name):
            raise InputError(f"{name}: manifest name/version does not match its directory")
        return manifest

    def verify(self, name: str, version: str | None = None) -> Manifest:
        """Check every file's SHA-256 against the manifest; InputError on a mismatch."""
        manifest = self.show(name, version)
        directory = self.path(name, manifest.version)
        if sha256_file(directory / manifest.weights_file) != manifest.weights_sha256:
            raise _integrity_error(f"{manifest.id} weights")
        for file_name, digest in manifest.assets.items():
            if sha256_file(directory / file_name) != digest:
                raise _integrity_error(f"{manifest.id} asset {file_name}")
        return manifest

    # -- writing ------------------------------------------------------------------------

    def register(
        self,
        manifest: Manifest | Mapping[str, Any],
        weights: Path,
        *,
        assets: Mapping[str, Path] | None = None,
        curve: Path | None = None,
        overwrite: bool = False,
        validate: bool = True,
        validator: Callable[[Manifest, Path], None] | None = None,
    ) -> Manifest:
        """Copy a model into the registry, record its SHA-256s, and prove it loads.

        Args:
            manifest: the manifest (``weights_sha256`` may be empty; if given it must match).
            weights: safetensors or TorchScript file named by ``manifest.format``.
            assets: extra files the model reads (e.g. ``tokenizer.json``), by target name.
            curve: training curve PNG, stored as ``curve.png``.
            overwrite: replace an existing version instead of refusing.
            validate: build the model on CPU and run a forward pass before committing.
            validator: how to prove the staged copy loads, instead of building a predictor
                (``secure_aiaas.llm`` passes its own); it raises InputError or ValueError.

        Raises:
            InputError: invalid manifest, mismatched digest, or weights that don't load.
        """
        try:
            parsed = (
                manifest if isinstance(manifest, Manifest) else Manifest.model_validate(manifest)
            )
        except ValidationError as exc:
            raise InputError(f"manifest: {_first_error(exc)}") from exc
        target = self._name_dir(parsed.name) / parsed.version
        if target.exists() and not overwrite:
            raise InputError(f"model {parsed.id} already registered")
        digest = sha256_file(Path(weights))
        if parsed.weights_sha256 and parsed.weights_sha256 != digest:
            raise _integrity_error("weights")
        asset_digests = {name: sha256_file(Path(src)) for name, src in (assets or {}).items()}
        for name, expected in parsed.assets.items():
            if asset_digests.get(name, expected) != expected:
                raise _integrity_error(f"asset {name}")
        updates: dict[str, Any] = {
            "weights_sha256": digest,
            "assets": {**parsed.assets, **asset_digests},
            "curve_file": "curve.png" if curve is not None else parsed.curve_file,
        }
        final = parsed.model_copy(update=updates)
        final = Manifest.model_validate(final.model_dump())  # re-run the validators

        staging = self._name_dir(final.name) / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            shutil.copyfile(weights, staging / final.weights_file)
            for name, src in (assets or {}).items():
                shutil.copyfile(src, staging / name)
            if curve is not None:
                shutil.copyfile(curve, staging / "curve.png")
            (staging / MANIFEST).write_text(final.model_dump_json(indent=2) + "\n")
            if validate:
                from secure_aiaas.inference.predictor import load_predictor

                try:
                    if validator is not None:
                        validator(final, staging)
                    else:
                        load_predictor(final, staging, device="cpu", validate=True)
                except (ValueError, RuntimeError) as exc:
                    raise InputError(f"weights: {_short(exc)}") from exc
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)  # readers see the old version or the complete new one
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def remove(self, name: str, version: str | None = None) -> builtins.list[str]:
        """Delete one version, or every version when `version` is None; returns those removed."""
        versions = [self.resolve(name, version)] if version is not None else self.versions(name)
        if not versions:
            raise NotFoundError("model not found")
        for v in versions:
            shutil.rmtree(self._name_dir(name) / v)
        if not self.versions(name):
            shutil.rmtree(self._name_dir(name), ignore_errors=True)
        return versions

    def next_version(self, name: str) -> str:
        """One more than the highest major version so far ("1" for a new model)."""
        versions = self.versions(name)
        return str(version_key(versions[-1])[0] + 1) if versions else "1"

    # -- loading ------------------------------------------------------------------------

    def load(
        self, name: str, version: str | None = None, *, device: str | torch.device | None = None
    ) -> Predictor:
        """Verify SHA-256s and build the model on `device` (see `inference.device`)."""
        from secure_aiaas.inference.predictor import load_predictor

        manifest = self.show(name, version)
        return load_predictor(manifest, self.path(name, manifest.version), device=device)

    def _name_dir(self, name: str) -> Path:
        import re

        from secure_aiaas.inference.manifest import NAME_PATTERN

        if not re.match(NAME_PATTERN, name):
            # The name becomes a path component: refuse anything that could escape the root.
            raise NotFoundError("model not found")
        return self.root / name


def _valid_version(version: str) -> bool:
    import re

    from secure_aiaas.inference.manifest import VERSION_PATTERN

    return re.match(VERSION_PATTERN, version) is not None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "manifest"
    return f"{where}: {error['msg']}"


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """JSON-ready dict of a manifest (what `models show --json` prints)."""
    return json.loads(manifest.model_dump_json())  # type: ignore[no-any-return]
