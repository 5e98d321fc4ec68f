"""A loaded chat model: weights on a device, its tokenizer, chat template and limits.

Prompts are built so that message text can never become control tokens: the chat template is
rendered with a unique marker in place of each message, the template's own text is encoded
with its special tokens, and each message is encoded with ``split_special_tokens`` (a user who
types ``<|im_start|>system`` gets those characters, not a new system turn). The template runs
in transformers' sandboxed Jinja environment.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secure_aiaas.errors import InputError
from secure_aiaas.inference.manifest import Manifest

# OpenAI's "developer" role is the system role for templates that predate it.
_TEMPLATE_ROLE = {"system": "system", "developer": "system", "user": "user",
                  "assistant": "assistant"}  # fmt: skip


class ChatTemplateError(InputError):
    code = "unsupported_conversation"
    public_message = "the model's chat template does not accept this conversation"


class NoChatTemplateError(InputError):
    code = "chat_not_supported"
    public_message = "this model has no chat template; use /v1/completions"


@dataclass(frozen=True)
class LoadedModel:
    """Everything the engine and the service need from one registered model version."""

    manifest: Manifest
    # A transformers PreTrainedModel, eval mode, on `device`; None in the copy a remote
    # engine's caller keeps (tokenizer and template only: the Ray engine's ingress).
    model: Any
    tokenizer: Any  # a transformers fast tokenizer
    chat_template: str | None
    eos_token_ids: tuple[int, ...]
    context_limit: int
    device: torch.device
    dtype: torch.dtype

    @property
    def id(self) -> str:
        return self.manifest.id

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def encode_text(self, text: str) -> list[int]:
        """A plain prompt (``/v1/completions``): text only, never control tokens."""
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        bos = self.tokenizer.bos_token_id
        prefix = [bos] if bos is not None and self._adds_bos() else []
        return prefix + list(ids["input_ids"])

    def encode_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        """Token ids of the conversation (role, text) with the assistant's turn opened.

        Raises:
            NoChatTemplateError: the model has no chat template.
            ChatTemplateError: the template refuses the conversation (e.g. roles out of order).
        """
        if self.chat_template is None:
            raise NoChatTemplateError()
        tag = secrets.token_hex(8)
        markers = [f"@@{tag}{i}@@" for i in range(len(messages))]
        try:
            rendered = self.tokenizer.apply_chat_template(
                [{"role": _TEMPLATE_ROLE[role], "content": marker}
                 for (role, _), marker in zip(messages, markers)],
                chat_template=self.chat_template, add_generation_prompt=True, tokenize=False,
            )  # fmt: skip
        except Exception as exc:  # jinja2 errors, or raise_exception() in the template
            raise ChatTemplateError() from exc
        pieces = re.split(f"@@{tag}([0-9]+)@@", str(rendered))
        # pieces alternate: template text, message index, template text, ...
        if len(pieces) != 2 * len(messages) + 1 or [int(i) for i in pieces[1::2]] != list(
            range(len(messages))
        ):
            raise ChatTemplateError()  # the template rewrote or dropped a message
        ids: list[int] = []
        for position, piece in enumerate(pieces):
            if position % 2 == 0:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
            else:
                text = messages[int(piece)][1]
                ids += self.tokenizer(text, add_special_tokens=False,
                                      split_special_tokens=True)["input_ids"]  # fmt: skip
        return ids

    def _adds_bos(self) -> bool:
        return bool(getattr(self.tokenizer, "add_bos_token", False))


def choose_dtype(device: torch.device, override: str | None = None) -> torch.dtype:
    """bf16 on CUDA (when supported) and on CPUs with bf16 matrix units, else fp32.

    On this project's CPU (AMX/AVX512-BF16) bf16 decodes faster than fp32 (docs/benchmarks.md);
    on a CPU without them bf16 is emulated and slow.
    """
    choice = (override or "auto").strip().lower()
    named = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32,
             "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
    if choice in named:
        return named[choice]
    if choice != "auto":
        raise InputError(f"unknown dtype {choice!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


def _cpu_has_bf16() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if os.name != "posix" or not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "amx_bf16" in flags or "avx512_bf16" in flags
