"""Tiny randomly initialised causal LMs and a byte-level tokenizer, built in the test run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_tokenizer() -> Any:
    """A byte-level BPE without merges: every UTF-8 byte is a token (plus 3 specials)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({ch: len(SPECIALS) + i for i, ch in enumerate(alphabet)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIALS)
    return tokenizer


VOCAB = len(SPECIALS) + 256


def tiny_config(model_type: str = "llama", **overrides: Any) -> Any:
    from transformers import AutoConfig

    common: dict[str, Any] = {
        "vocab_size": VOCAB,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    if model_type == "gpt2":
        kwargs = {
            "n_embd": 32,
            "n_layer": 2,
            "n_head": 4,
            "n_positions": 256,
            "architectures": ["GPT2LMHeadModel"],
        }
    else:
        kwargs = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256,
            "tie_word_embeddings": False,
            "architectures": [
                {
                    "llama": "LlamaForCausalLM",
                    "qwen2": "Qwen2ForCausalLM",
                    "mistral": "MistralForCausalLM",
                }[model_type]
            ],
        }
        if model_type == "mistral":
            kwargs["sliding_window"] = None
    return AutoConfig.for_model(model_type, **{**common, **kwargs, **overrides})


def tiny_model(model_type: str = "llama", seed: int = 0, **overrides: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, **overrides))
    return model.eval()


def save_tiny(
    directory: Path,
    model_type: str = "llama",
    seed: int = 0,
    *,
    chat_template: bool = True,
    **overrides: Any,
) -> Path:
    """A Hugging Face-style folder: config.json, model.safetensors, tokenizer files."""
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    model = tiny_model(model_type, seed, **overrides)
    save_model(model, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(model.config.to_json_string())
    byte_tokenizer().save(str(directory / "tokenizer.json"))
    config = {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if chat_template:
        (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return directory


class ScriptedLM:
    """A stand-in causal LM that always answers with `script` (one stream at a time).

    For the service's orchestration tests only (restoration needs an answer that contains
    placeholders); the engine's own logic is tested on the random models above. It keeps a
    one-layer KV cache so the engine's cache handling runs unchanged.
    """

    def __init__(self, script: list[int], vocab_size: int = VOCAB) -> None:
        import torch

        self.script = script
        self.vocab_size = vocab_size
        self._weight = torch.nn.Parameter(torch.zeros((vocab_size, 1)))
        self._prompt = 0

    def parameters(self) -> Any:
        return iter([self._weight])

    def get_output_embeddings(self) -> Any:
        import torch

        return torch.nn.Linear(1, self.vocab_size, bias=False)

    def __call__(self, *, input_ids: Any, cache: Any, **_: Any) -> Any:
        import torch

        batch, length = input_ids.shape
        if cache.get_seq_length() == 0:
            self._prompt = length
        state = torch.zeros((batch, 1, length, 1))
        cache.update(state, state, 0)
        index = min(cache.get_seq_length() - self._prompt, len(self.script) - 1)
        logits = torch.full((batch, 1, self.vocab_size), -1e4)
        logits[:, :, self.script[index]] = 1e4

        class Out:
            pass

        out = Out()
        out.logits = logits  # type: ignore[attr-defined]
        return out
