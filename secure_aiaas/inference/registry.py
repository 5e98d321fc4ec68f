"""Versioned model store: ``<data_dir>/models/<name>/<version>/{manifest.json, weights, ...}``.

Weights are safetensors (rebuilt through a named architecture builder) or TorchScript; nothing
is ever unpickled. Every file the model reads is SHA-256 checked against the manifest at load,
and a mismatch refuses the model. Listing and showing never import torch.

For the HE compiler the registry hands out plain data: `he_stages` (the network as numpy
stages, exported from the SHA-checked torch model) and `he_calibration` (the inputs stored with
the model at training time, ``he-calibration.npy``; None for models registered without them).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.inference.calibration import HE_CALIBRATION_ASSET, decode_calibration
from secure_aiaas.inference.manifest import Manifest, version_key

if TYPE_CHECKING:
    import numpy as np
    import torch

    from secure_aiaas.inference.predictor import Predictor
    from secure_aiaas.stages import Stages

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
            if name not in asset_digests:
                # The version could never load: every listed file is read and checked.
                raise InputError(f"asset {name}: listed in the manifest but not given")
            if asset_digests[name] != expected:
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
            if HE_CALIBRATION_ASSET in final.assets:
                decode_calibration((staging / HE_CALIBRATION_ASSET).read_bytes(), final)
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

    def attach_asset(self, name: str, version: str, file_name: str, data: bytes) -> Manifest:
        """Add a file to a registered version and list it, with its SHA-256, in the manifest.

        The file is written first and the manifest swapped in atomically after, so a reader
        sees the old manifest or the new one with a complete file. Used to store calibration
        inputs with models registered before they were (``models ensure``).

        Raises:
            InputError: the version already has a file of that name, or the data does not fit.
        """
        manifest = self.show(name, version)
        directory = self.path(name, manifest.version)
        taken = {MANIFEST, manifest.weights_file, manifest.curve_file, *manifest.assets}
        if file_name in taken or (directory / file_name).exists():
            raise InputError(f"{manifest.id} already has a file {file_name}")
        try:
            final = Manifest.model_validate(
                {**manifest.model_dump(), "assets": {**manifest.assets,
                                                     file_name: sha256_bytes(data)}}
            )  # fmt: skip
        except ValidationError as exc:
            raise InputError(f"manifest: {_first_error(exc)}") from exc
        if file_name == HE_CALIBRATION_ASSET:
            decode_calibration(data, final)
        _replace_file(directory / file_name, data)
        _replace_file(directory / MANIFEST, (final.model_dump_json(indent=2) + "\n").encode())
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

    def he_stages(self, name: str, version: str | None = None) -> Stages:
        """The network of `name` as numpy stages for `he.compile_model` (SHA-checked, on CPU).

        Raises:
            InputError: integrity failure, or a layer a CKKS circuit cannot evaluate.
        """
        from secure_aiaas.inference.he_export import export_stages

        try:
            predictor = self.load(name, version, device="cpu")
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{name}: weights: {_short(exc)}") from exc
        module = getattr(predictor, "module", None)
        if module is None:
            raise InputError(f"{predictor.manifest.id} has no network to evaluate under encryption")
        return export_stages(module)

    def he_calibration(self, name: str, version: str | None = None) -> np.ndarray[Any, Any] | None:
        """The calibration inputs stored with `name`, SHA-checked; None if it has none.

        The bytes that were hashed are the bytes parsed. Never imports torch.

        Raises:
            InputError: code ``integrity_check_failed`` on a digest mismatch, or data that does
                not fit the model's input.
        """
        manifest = self.show(name, version)
        digest = manifest.assets.get(HE_CALIBRATION_ASSET)
        if digest is None:
            return None
        data = (self.path(name, manifest.version) / HE_CALIBRATION_ASSET).read_bytes()
        if sha256_bytes(data) != digest:
            raise _integrity_error(f"{manifest.id} asset {HE_CALIBRATION_ASSET}")
        return decode_calibration(data, manifest)

    def _name_dir(self, name: str) -> Path:
        import re

        from secure_aiaas.inference.manifest import NAME_PATTERN

        if not re.match(NAME_PATTERN, name):
            # The name becomes a path component: refuse anything that could escape the root.
            raise NotFoundError("model not found")
        return self.root / name


def _replace_file(path: Path, data: bytes) -> None:
    """Write `data` beside `path` and rename it over `path` (readers never see half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)  # mkstemp creates 0600; match the other registry files
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
