"""Chat models in the model registry: ``<data_dir>/models/<name>/<version>/manifest.json``.

A chat model is a Hugging Face causal-LM folder kept as it came (config, safetensors weights,
``tokenizer.json``, chat template) under the same manifest as every other model: task
``text-generation``, ``architecture`` = the config's ``model_type``, every file's SHA-256.

What `register_causal_lm` refuses (`InputError`, nothing copied):

* pickle-format files anywhere in the folder (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``,
  ``*.ckpt`` ...): only safetensors are ever loaded, and a folder that also ships pickles is
  refused rather than half-used;
* remote code: ``*.py`` files, or ``auto_map`` in the config or tokenizer config
  (``trust_remote_code`` is never set);
* an architecture outside `ARCHITECTURES` (the ones our tests build and run), a quantized
  checkpoint (``quantization_config``), a folder without ``tokenizer.json``;
* symbolic links, and weights that do not load or do not run one forward pass.

`load_causal_lm` reads each file once, checks its SHA-256 against the manifest, and builds the
model and tokenizer from those same bytes (a file swapped after the check is never read), on
the device and dtype chosen for it; nothing touches the network (``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry, sha256_bytes

if TYPE_CHECKING:
    import torch

    from secure_aiaas.llm.model import LoadedModel

# model_type -> the one transformers class we build for it. Tested in tests/llm/test_registry.py.
ARCHITECTURES: dict[str, str] = {
    "llama": "LlamaForCausalLM",  # Llama 2/3, SmolLM2, TinyLlama ...
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
# The files a chat model reads; anything else in the folder (README, LICENSE ...) is not copied.
TEXT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
              "model.safetensors.index.json")  # fmt: skip
_JSON_LIMIT = 64 << 20  # tokenizer.json of large vocabularies is tens of MB
TASK = "text-generation"


@dataclass(frozen=True)
class CausalLMSource:
    """A checked source folder: what will be copied, and the facts the manifest records."""

    directory: Path
    weights: list[str]  # safetensors files, first is the manifest's weights_file
    assets: list[str]
    config: dict[str, Any]
    chat_template: bool


def inspect_causal_lm(directory: Path | str) -> CausalLMSource:
    """Check a Hugging Face causal-LM folder without loading it (see the module docstring).

    Raises:
        InputError: anything we will not load.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError("model folder not found")
    files = sorted(p for p in root.rglob("*") if not p.is_dir() or p.is_symlink())
    if any(p.is_symlink() for p in files):
        raise InputError("model folder contains symbolic links; copy the real files in")
    if any(p.suffix.lower() in PICKLE_SUFFIXES for p in files):
        raise InputError(
            "model folder contains pickle-format files (.bin/.pt/.pkl ...); "
            "only safetensors are loaded: remove them",
            code="unsafe_model_format",
        )
    if any(p.suffix.lower() == ".py" for p in files):
        raise InputError("model folder contains Python code; remote code is never run",
                         code="remote_code_refused")  # fmt: skip
    config = _json(root / "config.json", "config.json")
    check_config(config)
    tokenizer_config = (_json(root / "tokenizer_config.json", "tokenizer_config.json")
                        if (root / "tokenizer_config.json").is_file() else {})  # fmt: skip
    if "auto_map" in tokenizer_config:
        raise InputError("tokenizer_config.json: auto_map (remote code) is refused",
                         code="remote_code_refused")  # fmt: skip
    if not (root / "tokenizer.json").is_file():
        raise InputError("a fast tokenizer (tokenizer.json) is required")
    weights = _weight_files(root)
    assets = [name for name in TEXT_FILES if (root / name).is_file()] + weights[1:]
    chat = (
        (root / "chat_template.jinja").is_file()
        or (root / "chat_template.json").is_file()
        or isinstance(tokenizer_config.get("chat_template"), (str, list))
    )
    return CausalLMSource(root, weights, assets, config, chat)


def check_config(config: Mapping[str, Any]) -> None:
    """Refuse configs we do not build: unknown architecture, remote code, quantization."""
    if "auto_map" in config:
        raise InputError(
            "config.json: auto_map (remote code) is refused", code="remote_code_refused"
        )
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise InputError(f"config.json: model_type must be one of {', '.join(sorted(ARCHITECTURES))}",
                         code="unsupported_architecture")  # fmt: skip
    if config.get("architectures") != [ARCHITECTURES[model_type]]:
        raise InputError(f"config.json: architectures must be [{ARCHITECTURES[model_type]!r}]",
                         code="unsupported_architecture")  # fmt: skip
    if config.get("quantization_config"):
        raise InputError("config.json: quantized checkpoints are not supported",
                         code="unsupported_architecture")  # fmt: skip


def _weight_files(root: Path) -> list[str]:
    index = root / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _json(index, "model.safetensors.index.json").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError("model.safetensors.index.json: weight_map missing")
        shards = sorted({str(v) for v in weight_map.values()})
        if any("/" in s or not s.endswith(".safetensors") or not (root / s).is_file()
               for s in shards):  # fmt: skip
            raise InputError("model.safetensors.index.json: a listed shard is missing")
        return shards
    if (root / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise InputError("no safetensors weights (model.safetensors) in the model folder")


def _json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{what} is missing")
    if path.stat().st_size > _JSON_LIMIT:
        raise InputError(f"{what} is too large")
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object")
    return value


def _manifest(source: CausalLMSource, name: str, version: str, description: str,
              provenance: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    import transformers

    config = source.config
    keys = (
        "model_type",
        "architectures",
        "hidden_size",
        "num_hidden_layers",
        "vocab_size",
        "max_position_embeddings",
        "n_positions",
        "sliding_window",
        "dtype",
        "torch_dtype",
    )
    return {
        "name": name, "version": version, "task": TASK, "description": description,
        "architecture": config["model_type"],
        "architecture_config": {k: config[k] for k in keys if config.get(k) is not None}
        | {"chat_template": source.chat_template},
        "format": "safetensors", "weights_file": source.weights[0],
        "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "completion", "datatype": "BYTES", "shape": [-1]}],
        "training": {**provenance, "transformers": transformers.__version__},
    }  # fmt: skip


def register_causal_lm(
    registry: ModelRegistry,
    directory: Path | str,
    *,
    name: str,
    version: str | None = None,
    description: str = "",
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Copy a Hugging Face causal-LM folder into the registry, hash every file, prove it loads.

    Args:
        registry: the model registry (``ModelRegistry(settings.data_dir)``).
        directory: the local folder (config.json, *.safetensors, tokenizer.json, template).
        name: the registry name (what clients pass as ``model``).
        version: defaults to the next major version.
        provenance: recorded under the manifest's ``training`` (source, licence ...).
        overwrite: replace an existing version.

    Raises:
        InputError: a folder we refuse (module docstring), or weights that do not load.
    """
    source = inspect_causal_lm(directory)
    version = version or registry.next_version(name)
    manifest = _manifest(source, name, version, description, provenance or {})
    assets = {asset: source.directory / asset for asset in source.assets}
    return registry.register(manifest, source.directory / source.weights[0], assets=assets,
                             overwrite=overwrite, validator=_prove_it_loads)  # fmt: skip


def _prove_it_loads(manifest: Manifest, directory: Path) -> None:
    import torch

    loaded = load_from_directory(manifest, directory, device=torch.device("cpu"),
                                 dtype=torch.float32)  # fmt: skip
    with torch.inference_mode():
        loaded.model(
            input_ids=torch.tensor([[0]]), attention_mask=torch.tensor([[1]]), use_cache=False
        )


def load_causal_lm(
    registry: ModelRegistry,
    name: str,
    version: str | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Verify and load a registered chat model (latest version unless given).

    Args:
        device: ``None``/``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda[:N]"``.
        dtype: ``None``/``"auto"`` (see `model.choose_dtype`), ``"bfloat16"``, ``"float32"``.

    Raises:
        NotFoundError: no such model, or not a chat model.
        InputError: code ``integrity_check_failed`` on a SHA-256 mismatch; weights we refuse.
    """
    import torch

    from secure_aiaas.inference.device import select_device
    from secure_aiaas.llm.model import choose_dtype

    manifest = registry.show(name, version)
    if manifest.task != TASK:
        raise NotFoundError("model is not a chat model")
    target = device if isinstance(device, torch.device) else select_device(device)
    chosen = dtype if isinstance(dtype, torch.dtype) else choose_dtype(target, dtype)
    return load_from_directory(manifest, registry.path(name, manifest.version), device=target,
                               dtype=chosen)  # fmt: skip


def _verified(manifest: Manifest, directory: Path) -> dict[str, bytes]:
    expected = {manifest.weights_file: manifest.weights_sha256, **manifest.assets}
    data: dict[str, bytes] = {}
    for file_name, digest in expected.items():
        path = directory / file_name
        if path.is_symlink() or not path.is_file():
            raise InputError(
                f"{manifest.id}: {file_name} is missing", code="integrity_check_failed"
            )
        data[file_name] = path.read_bytes()
        if sha256_bytes(data[file_name]) != digest:
            raise InputError(f"{manifest.id} {file_name}: SHA-256 mismatch; model refused",
                             code="integrity_check_failed")  # fmt: skip
    return data


def load_from_directory(
    manifest: Manifest, directory: Path, *, device: torch.device, dtype: torch.dtype
) -> LoadedModel:
    """Build the model and tokenizer from the verified bytes of one version directory."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig
    from transformers.utils import logging as hf_logging

    from secure_aiaas.llm.model import LoadedModel

    if manifest.task != TASK or manifest.architecture not in ARCHITECTURES:
        raise InputError(
            f"{manifest.id}: not a chat model we load", code="unsupported_architecture"
        )
    files = _verified(manifest, directory)
    config_dict = _parse_json(files, "config.json")
    check_config(config_dict)
    if config_dict["model_type"] != manifest.architecture:
        raise InputError(f"{manifest.id}: config.json does not match the manifest")
    options = {k: v for k, v in config_dict.items() if k != "model_type"}
    config = AutoConfig.for_model(config_dict["model_type"], **options)
    model_class: Any = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    if model_class.__name__ != ARCHITECTURES[manifest.architecture]:
        raise InputError(f"{manifest.id}: unexpected model class", code="unsupported_architecture")
    state: dict[str, Any] = {}
    for file_name in [manifest.weights_file, *manifest.assets]:
        if file_name.endswith(".safetensors"):
            try:
                state.update(load_safetensors(files[file_name]))
            except SafetensorError as exc:
                raise InputError(f"{manifest.id}: {file_name} is not valid safetensors") from exc
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model, info = model_class.from_pretrained(
            None, config=config, state_dict=state, dtype=dtype, output_loading_info=True
        )
    except (ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"{manifest.id}: weights do not fit the config") from exc
    if info.get("missing_keys") or info.get("mismatched_keys"):
        raise InputError(f"{manifest.id}: weights are missing tensors the config needs")
    model = model.to(device).eval()
    tokenizer, template = _tokenizer(files)
    return LoadedModel(
        manifest=manifest, model=model, tokenizer=tokenizer, chat_template=template,
        eos_token_ids=_eos_ids(config_dict, files, tokenizer),
        context_limit=_context_limit(config), device=device, dtype=dtype,
    )  # fmt: skip


def _parse_json(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    try:
        value = json.loads(files[name])
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} is missing or not valid JSON") from exc
    if not isinstance(value, dict):
        raise InputError(f"{name} must be a JSON object")
    return value


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # AddedToken serialised as {"content": ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _tokenizer(files: Mapping[str, bytes]) -> tuple[Any, str | None]:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    config = _parse_json(files, "tokenizer_config.json") if "tokenizer_config.json" in files else {}
    if "auto_map" in config:
        raise InputError("tokenizer_config.json: auto_map (remote code) is refused",
                         code="remote_code_refused")  # fmt: skip
    try:
        backend = Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
    except (KeyError, UnicodeDecodeError, Exception) as exc:
        raise InputError("tokenizer.json is missing or invalid") from exc
    specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token",
                                                        "unk_token")}  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, **{k: v for k, v in specials.items() if v is not None},
        add_bos_token=bool(config.get("add_bos_token", False)),
    )  # fmt: skip
    template: str | None = None
    if "chat_template.jinja" in files:
        template = files["chat_template.jinja"].decode("utf-8")
    elif "chat_template.json" in files:
        template = _token_text(_parse_json(files, "chat_template.json").get("chat_template"))
    else:
        raw = config.get("chat_template")
        if isinstance(raw, list):  # named templates: [{"name": "default", "template": ...}]
            raw = next((t.get("template") for t in raw
                        if isinstance(t, dict) and t.get("name") == "default"), None)  # fmt: skip
        template = raw if isinstance(raw, str) else None
    return tokenizer, template


def _eos_ids(
    config: Mapping[str, Any], files: Mapping[str, bytes], tokenizer: Any
) -> tuple[int, ...]:
    found: set[int] = set()
    generation = (
        _parse_json(files, "generation_config.json") if "generation_config.json" in files else {}
    )
    for source in (generation.get("eos_token_id"), config.get("eos_token_id"),
                   tokenizer.eos_token_id):  # fmt: skip
        if isinstance(source, int):
            found.add(source)
        elif isinstance(source, list):
            found.update(t for t in source if isinstance(t, int))
    return tuple(sorted(found))


def _context_limit(config: Any) -> int:
    limit = int(getattr(config, "max_position_embeddings", 0) or 2048)
    window = getattr(config, "sliding_window", None)
    if isinstance(window, int) and window > 0:
        # Our cache keeps every token; staying inside the window keeps attention exact.
        limit = min(limit, window)
    return limit
