"""Chat models in the model registry: what registers, what is refused, what loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.inference import ModelPool, ModelRegistry
from secure_aiaas.llm.registry import ARCHITECTURES, load_causal_lm, register_causal_lm
from tests.llm.tiny import save_tiny, tiny_model

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_each_tested_architecture_registers_and_loads_with_every_file_hashed(
    tmp_path: Path, model_type: str
) -> None:
    source = save_tiny(tmp_path / "src", model_type)
    (source / "README.md").write_text("not copied")
    registry = ModelRegistry(tmp_path / "data")
    manifest = register_causal_lm(registry, source, name="tiny")
    assert (manifest.task, manifest.architecture, manifest.version) == (
        "text-generation",
        model_type,
        "1",
    )
    assert set(manifest.assets) == {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    }
    assert not (registry.path("tiny") / "README.md").exists()
    loaded = load_causal_lm(registry, "tiny", device="cpu", dtype="float32")
    assert loaded.chat_template is not None and loaded.eos_token_ids == (2,)
    # The loaded weights are the registered ones, bit for bit.
    reference = tiny_model(model_type)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert registry.verify("tiny").id == "tiny:1"


def test_sharded_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = save_tiny(tmp_path / "src")
    state = tiny_model().state_dict()
    names = sorted(state)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    for file_name, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, str(source / file_name))
    (source / "model.safetensors").unlink()
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (source / "model.safetensors.index.json").write_text(json.dumps(index))
    registry = ModelRegistry(tmp_path / "data")
    manifest = register_causal_lm(registry, source, name="sharded")
    assert manifest.weights_file == "model-00001-of-00002.safetensors"
    assert "model-00002-of-00002.safetensors" in manifest.assets
    load_causal_lm(registry, "sharded", device="cpu", dtype="float32")


def refusal(tmp_path: Path, change: object) -> InputError:
    source = save_tiny(tmp_path / "src")
    change(source)  # type: ignore[operator]
    registry = ModelRegistry(tmp_path / "data")
    with pytest.raises(InputError) as caught:
        register_causal_lm(registry, source, name="bad")
    assert registry.versions("bad") == []  # nothing half-registered
    return caught.value


def edit_config(source: Path, **changes: object) -> None:
    config = json.loads((source / "config.json").read_text())
    config.update(changes)
    (source / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda s: (s / "pytorch_model.bin").write_bytes(b"\x80\x04pickle"), "unsafe_model_format"),
        (
            lambda s: (s / "sub").mkdir() or (s / "sub" / "extra.pt").write_bytes(b"x"),
            "unsafe_model_format",
        ),
        (lambda s: (s / "modeling_evil.py").write_text("import os"), "remote_code_refused"),
        (
            lambda s: edit_config(s, auto_map={"AutoModelForCausalLM": "evil.Model"}),
            "remote_code_refused",
        ),
        (
            lambda s: edit_config(s, model_type="bert", architectures=["BertForMaskedLM"]),
            "unsupported_architecture",
        ),
        (
            lambda s: edit_config(s, architectures=["LlamaForSequenceClassification"]),
            "unsupported_architecture",
        ),
        (
            lambda s: edit_config(s, quantization_config={"quant_method": "bitsandbytes"}),
            "unsupported_architecture",
        ),
    ],
)
def test_refused_folders(tmp_path: Path, change: object, code: str) -> None:
    assert refusal(tmp_path, change).code == code


@pytest.mark.parametrize(
    "change",
    [
        lambda s: (s / "tokenizer.json").unlink(),
        lambda s: (s / "model.safetensors").unlink(),
        lambda s: (s / "config.json").write_text("{not json"),
        lambda s: (s / "model.safetensors").write_bytes(b"garbage"),
        lambda s: edit_config(s, hidden_size=64),  # weights do not fit the config
        lambda s: (s / "link.safetensors").symlink_to(s / "model.safetensors"),
    ],
)
def test_folders_that_do_not_load_are_refused(tmp_path: Path, change: object) -> None:
    refusal(tmp_path, change)


def test_a_file_changed_after_registration_is_refused_at_load(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "data")
    register_causal_lm(registry, save_tiny(tmp_path / "src"), name="tiny")
    directory = registry.path("tiny")
    for file_name in ("model.safetensors", "tokenizer.json", "chat_template.jinja"):
        original = (directory / file_name).read_bytes()
        (directory / file_name).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(InputError) as caught:
            load_causal_lm(registry, "tiny", device="cpu")
        assert caught.value.code == "integrity_check_failed"
        (directory / file_name).write_bytes(original)
    load_causal_lm(registry, "tiny", device="cpu")


def test_only_chat_models_load_as_chat_models(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "data")
    with pytest.raises(NotFoundError):
        load_causal_lm(registry, "absent")


async def test_the_predictor_pool_leaves_chat_models_to_the_llm_engine(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "data")
    register_causal_lm(registry, save_tiny(tmp_path / "src"), name="tiny-chat")
    pool = ModelPool(registry, device="cpu")
    await pool.start()
    try:
        assert pool.ready and pool.manifests() == []
    finally:
        await pool.close()


def test_registration_of_a_copy_keeps_the_source_untouched(tmp_path: Path) -> None:
    source = save_tiny(tmp_path / "src")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    registry = ModelRegistry(tmp_path / "data")
    register_causal_lm(registry, source, name="tiny")
    register_causal_lm(registry, source, name="tiny")  # a second version
    assert registry.versions("tiny") == ["1", "2"]
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    shutil.rmtree(source)
    load_causal_lm(registry, "tiny", "1", device="cpu")  # the registry holds its own copy
