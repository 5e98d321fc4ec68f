"""Registry: versions, SHA-256 refusal of tampered files, and no unpickling ever."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.inference import Manifest, ModelRegistry
from secure_aiaas.inference.registry import sha256_bytes


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _export(registry: ModelRegistry, name: str, target: Path) -> tuple[dict, Path]:
    """A manifest (without digest) and weights as a user would hand them to `register`."""
    manifest = json.loads((registry.path(name) / "manifest.json").read_text())
    manifest.update(weights_sha256="", curve_file=None, version="7", assets={})
    weights = target / "w.safetensors"
    weights.write_bytes((registry.path(name) / "weights.safetensors").read_bytes())
    return manifest, weights


def test_list_show_versions(registry: ModelRegistry) -> None:
    assert registry.names() == ["breast-cancer-lr", "digits-mlp", "text-embed"]
    assert [m.id for m in registry.list()] == [
        "breast-cancer-lr:1", "digits-mlp:1", "text-embed:1",
    ]  # fmt: skip
    assert registry.show("digits-mlp").inputs[0].shape == [-1, 64]
    with pytest.raises(NotFoundError):
        registry.show("no-such-model")
    with pytest.raises(NotFoundError):
        registry.show("digits-mlp", "99")
    with pytest.raises(NotFoundError):
        registry.show("../../etc")  # a name is a path component: refused, not resolved


def test_register_computes_digest_and_next_version_orders_numerically(
    data_dir: Path, tmp_path: Path
) -> None:
    registry = ModelRegistry(data_dir)
    manifest, weights = _export(registry, "digits-mlp", tmp_path)
    for version in ("9", "10"):
        registered = registry.register({**manifest, "version": version}, weights)
        assert registered.weights_sha256 == registry.show("digits-mlp", "1").weights_sha256
    assert registry.versions("digits-mlp") == ["1", "9", "10"]
    assert registry.show("digits-mlp").version == "10"
    assert registry.next_version("digits-mlp") == "11"
    with pytest.raises(InputError, match="already registered"):
        registry.register({**manifest, "version": "9"}, weights)
    assert registry.remove("digits-mlp", "9") == ["9"]
    assert registry.versions("digits-mlp") == ["1", "10"]


def test_tampered_weights_are_refused_at_load(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    registry.load("digits-mlp", device="cpu")  # loads before tampering
    _flip_byte(registry.path("digits-mlp") / "weights.safetensors")
    with pytest.raises(InputError) as caught:
        registry.load("digits-mlp", device="cpu")
    assert caught.value.code == "integrity_check_failed"
    with pytest.raises(InputError, match="SHA-256"):
        registry.verify("digits-mlp")


def test_edited_manifest_digest_does_not_match_other_weights(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    cancer = registry.path("breast-cancer-lr") / "weights.safetensors"
    digits = registry.path("digits-mlp") / "weights.safetensors"
    digits.write_bytes(cancer.read_bytes())  # swap in another model's valid weights
    with pytest.raises(InputError, match="SHA-256"):
        registry.load("digits-mlp", device="cpu")


def test_register_refuses_a_declared_digest_that_does_not_match(
    data_dir: Path, tmp_path: Path
) -> None:
    registry = ModelRegistry(data_dir)
    manifest, weights = _export(registry, "digits-mlp", tmp_path)
    with pytest.raises(InputError, match="SHA-256"):
        registry.register({**manifest, "weights_sha256": "0" * 64}, weights)
    assert registry.versions("digits-mlp") == ["1"]


def test_register_refuses_weights_that_do_not_fit_the_architecture(
    data_dir: Path, tmp_path: Path
) -> None:
    registry = ModelRegistry(data_dir)
    manifest, _ = _export(registry, "digits-mlp", tmp_path)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"0.mean": torch.zeros(64), "1.weight": torch.zeros(5, 5)}, wrong)
    with pytest.raises(InputError, match="weights"):
        registry.register(manifest, wrong)
    assert registry.versions("digits-mlp") == ["1"]
    assert not any(p.name.startswith(".staging") for p in (registry.root / "digits-mlp").iterdir())


def test_register_refuses_unsafe_manifests(data_dir: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(data_dir)
    manifest, weights = _export(registry, "digits-mlp", tmp_path)
    for bad in (
        {"format": "pickle"},
        {"weights_file": "../../outside.safetensors"},
        {"name": "../evil"},
        {"architecture": "not-a-builder"},
        {"he_compatible": True, "architecture_config": {"layers": [
            {"type": "standardize", "features": 64},
            {"type": "linear", "in_features": 64, "out_features": 32},
            {"type": "relu"},
            {"type": "linear", "in_features": 32, "out_features": 10}]}},
    ):  # fmt: skip
        with pytest.raises(InputError):
            registry.register({**manifest, **bad}, weights)
    assert registry.versions("digits-mlp") == ["1"]


class _Payload:
    """A pickle that would create `marker` if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript"])
def test_pickled_weights_are_never_unpickled(data_dir: Path, tmp_path: Path, fmt: str) -> None:
    registry = ModelRegistry(data_dir)
    marker = tmp_path / "unpickled"
    manifest, _ = _export(registry, "digits-mlp", tmp_path)
    manifest.update(format=fmt, he_compatible=False)  # so only the weights can be refused
    for index, blob in enumerate(
        (
            pickle.dumps(_Payload(marker)),
            _torch_save_bytes({"state": _Payload(marker)}, tmp_path),
        )
    ):
        evil = tmp_path / f"evil{index}.bin"
        evil.write_bytes(blob)
        with pytest.raises(InputError):
            registry.register({**manifest, "format": fmt}, evil)
        # The same file slipped in behind a matching manifest digest: refused at load as well.
        target = registry.path("digits-mlp")
        (target / "weights.safetensors").write_bytes(blob)
        on_disk = json.loads((target / "manifest.json").read_text())
        on_disk.update(weights_sha256=sha256_bytes(blob), format=fmt, he_compatible=False)
        (target / "manifest.json").write_text(Manifest.model_validate(on_disk).model_dump_json())
        with pytest.raises((ValueError, InputError)):
            registry.load("digits-mlp", device="cpu")
    assert not marker.exists()


def _torch_save_bytes(obj: object, tmp_path: Path) -> bytes:
    # The classic attack: a torch.save archive whose pickle runs code on torch.load.
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    return path.read_bytes()


def test_torchscript_models_register_and_serve(data_dir: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(data_dir)
    module = registry.load("digits-mlp", device="cpu").module  # type: ignore[attr-defined]
    scripted = tmp_path / "digits.pt"
    torch.jit.save(torch.jit.script(module), scripted)
    manifest, _ = _export(registry, "digits-mlp", tmp_path)
    manifest.update(name="digits-ts", version="1", format="torchscript", he_compatible=False,
                    weights_file="model.pt", architecture_config={})  # fmt: skip
    registry.register(manifest, scripted)
    x = np.arange(128, dtype=np.float32).reshape(2, 64) % 17
    ours = registry.load("digits-ts", device="cpu").predict(x)
    reference = registry.load("digits-mlp", device="cpu").predict(x)
    np.testing.assert_allclose(ours["logits"], reference["logits"], rtol=1e-5, atol=1e-5)
