"""HE calibration inputs are stored with the model at training time, hashed and checked at load.

Before, the server recomputed them from the packaged dataset at every start
(``training.calibration_inputs``); the stored rows are those same rows, so plans are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from secure_aiaas import stages as st
from secure_aiaas.errors import InputError
from secure_aiaas.he import compile_model
from secure_aiaas.inference import HE_CALIBRATION_ASSET, ModelRegistry, encode_calibration
from secure_aiaas.inference.registry import sha256_file
from secure_aiaas.training import (
    calibration_inputs,
    ensure_builtin_models,
    store_missing_calibration,
)

HE_MODELS = ("digits-mlp", "breast-cancer-lr")


def _strip_calibration(registry: ModelRegistry, name: str) -> None:
    """Make `name` look like a version trained before calibration was stored with models."""
    directory = registry.path(name)
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["assets"][HE_CALIBRATION_ASSET]
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (directory / HE_CALIBRATION_ASSET).unlink()


@pytest.mark.parametrize("name", HE_MODELS)
def test_trainer_stores_the_rows_the_server_used_to_recompute(
    registry: ModelRegistry, name: str
) -> None:
    manifest = registry.show(name)
    path = registry.path(name) / HE_CALIBRATION_ASSET
    assert manifest.assets[HE_CALIBRATION_ASSET] == sha256_file(path)
    stored = registry.he_calibration(name)
    recomputed = calibration_inputs(manifest.training["dataset"])
    assert stored is not None and recomputed is not None
    assert stored.dtype == recomputed.dtype and stored.shape == recomputed.shape
    assert stored.tobytes() == recomputed.tobytes()
    assert np.load(path, allow_pickle=False).shape[1:] == tuple(manifest.inputs[0].shape[1:])
    registry.verify(name)  # listed like any other asset: the SHA-256 check covers it


@pytest.mark.parametrize("name", HE_MODELS)
def test_plan_from_the_registry_is_the_plan_from_recomputed_inputs(
    registry: ModelRegistry, name: str
) -> None:
    stages = registry.he_stages(name)
    from_registry = compile_model(stages, name, calibration=registry.he_calibration(name))
    recomputed = calibration_inputs(registry.show(name).training["dataset"])
    before = compile_model(stages, name, calibration=recomputed)
    assert from_registry.plan.to_json() == before.plan.to_json()


def test_models_without_calibration_compile_with_the_default_bound(
    registry: ModelRegistry,
) -> None:
    assert registry.he_calibration("text-embed") is None
    stages = registry.he_stages("digits-mlp")
    assert [type(s) for s in stages] == [st.Standardize, st.Linear, st.Square, st.Linear]
    plan = compile_model(stages, "digits-mlp", calibration=None).plan
    assert plan.depth == 3 and plan.fingerprint


def test_tampered_calibration_is_refused(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    path = registry.path("digits-mlp") / HE_CALIBRATION_ASSET
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        registry.he_calibration("digits-mlp")
    assert caught.value.code == "integrity_check_failed"
    with pytest.raises(InputError, match="SHA-256"):
        registry.load("digits-mlp", device="cpu")  # checked at every load, like the weights


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (np.zeros((4, 63), np.float32), "does not fit input"),
        (np.zeros((0, 64), np.float32), "rows"),
        (np.full((2, 64), np.inf), "finite"),
        (np.zeros((2, 64), np.int64), "float32 or float64"),
        (np.array([{"a": 1}] * 2, dtype=object), "not a .npy array"),  # pickles never load
    ],
)
def test_register_refuses_calibration_that_does_not_fit(
    data_dir: Path, tmp_path: Path, rows: np.ndarray, reason: str
) -> None:
    registry = ModelRegistry(data_dir)
    source = registry.path("digits-mlp")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(version="2", weights_sha256="", curve_file=None, assets={})
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, rows, allow_pickle=True)
    with pytest.raises(InputError, match=reason):
        registry.register(manifest, source / "weights.safetensors",
                          assets={HE_CALIBRATION_ASSET: calibration})  # fmt: skip
    assert registry.versions("digits-mlp") == ["1"]


def test_register_refuses_a_listed_asset_that_is_not_given(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    source = registry.path("digits-mlp")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(version="2", weights_sha256="", curve_file=None)
    with pytest.raises(InputError, match="listed in the manifest but not given"):
        registry.register(manifest, source / "weights.safetensors")


def test_ensure_stores_calibration_for_models_trained_before(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    before = {n: compile_model(registry.he_stages(n), n, calibration=registry.he_calibration(n))
              for n in HE_MODELS}  # fmt: skip
    stored = {n: (registry.path(n) / HE_CALIBRATION_ASSET).read_bytes() for n in HE_MODELS}
    for name in HE_MODELS:
        _strip_calibration(registry, name)
        assert registry.he_calibration(name) is None
        registry.verify(name)  # a valid pre-change version
    assert ensure_builtin_models(data_dir, progress=False) == []  # nothing retrained
    for name in HE_MODELS:
        manifest = registry.verify(name)
        path = registry.path(name) / HE_CALIBRATION_ASSET
        assert path.read_bytes() == stored[name]
        assert manifest.assets[HE_CALIBRATION_ASSET] == hashlib.sha256(stored[name]).hexdigest()
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        after = compile_model(registry.he_stages(name), name,
                              calibration=registry.he_calibration(name))  # fmt: skip
        assert after.plan.to_json() == before[name].plan.to_json()
    assert store_missing_calibration(data_dir) == []  # idempotent
    assert not [p for p in registry.path("digits-mlp").iterdir() if p.name.startswith(".tmp-")]


def test_ensure_leaves_models_of_other_origins_alone(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    _strip_calibration(registry, "digits-mlp")
    directory = registry.path("digits-mlp")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["training"] = {"dataset": "my-own-pixels"}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    assert store_missing_calibration(data_dir) == []
    assert registry.he_calibration("digits-mlp") is None
    assert not (directory / HE_CALIBRATION_ASSET).exists()


def test_attach_asset_refuses_to_replace_a_file(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir)
    rows = encode_calibration(np.zeros((2, 64), np.float32))
    with pytest.raises(InputError, match="already has a file"):
        registry.attach_asset("digits-mlp", "1", HE_CALIBRATION_ASSET, rows)
    with pytest.raises(InputError, match="already has a file"):
        registry.attach_asset("digits-mlp", "1", "weights.safetensors", rows)
    with pytest.raises(InputError, match="asset names"):
        registry.attach_asset("digits-mlp", "1", "../escape.npy", rows)
    assert not (registry.root / "digits-mlp" / "escape.npy").exists()
