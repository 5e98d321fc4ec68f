"""The manifest of a registered model version: everything needed to rebuild and serve it.

A manifest plus its weights file is enough to reconstruct the model without unpickling:
`architecture` names a builder in `inference.architectures`, `architecture_config` holds its
arguments, and the weights are a safetensors state dict (or a TorchScript archive).
Importing this module never imports torch.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
VERSION_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,9}){0,2}$"
# A file name inside the version directory: no separators, no "..", no hidden files.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
WeightsFormat = Literal["safetensors", "torchscript"]
# text-generation models are served by `secure_aiaas.llm`, not by the predictors here.
Task = Literal[
    "classification", "binary-classification", "regression", "embedding", "text-generation"
]


class TensorSpec(BaseModel):
    """One named input or output tensor (KServe v2 metadata shape: -1 is a variable dim)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
    datatype: Datatype
    shape: list[int] = Field(min_length=1, max_length=8)

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in shape):
            raise ValueError("dims are positive, or -1 for a variable dim")
        return shape


class Manifest(BaseModel):
    """`<data_dir>/models/<name>/<version>/manifest.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    task: Task
    description: str = Field(default="", max_length=2000)
    architecture: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    architecture_config: dict[str, Any] = Field(default_factory=dict)
    format: WeightsFormat = "safetensors"
    weights_file: str = "weights.safetensors"
    # Filled in by the registry at register time; checked at every load.
    weights_sha256: str = ""
    # Other files the model reads (tokenizer.json ...): file name -> SHA-256, also checked.
    assets: dict[str, str] = Field(default_factory=dict)
    inputs: list[TensorSpec] = Field(min_length=1, max_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    labels: list[str] | None = None
    he_compatible: bool = False
    metrics: dict[str, float] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    curve_file: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("weights_file", "curve_file")
    @classmethod
    def _plain_file_name(cls, value: str | None) -> str | None:
        if value is not None and not _FILE_NAME.match(value):
            raise ValueError("must be a plain file name inside the version directory")
        return value

    @field_validator("weights_sha256")
    @classmethod
    def _sha(cls, value: str) -> str:
        if value and not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hex digits")
        return value

    @field_validator("assets")
    @classmethod
    def _assets(cls, value: dict[str, str]) -> dict[str, str]:
        for file_name, digest in value.items():
            if not _FILE_NAME.match(file_name) or file_name == "manifest.json":
                raise ValueError("asset names must be plain file names")
            if not _SHA256.match(digest):
                raise ValueError("asset digests must be 64 lowercase hex digits")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [t.name for t in [*self.inputs, *self.outputs]]
        if len(names) != len(set(names)):
            raise ValueError("input and output names must be unique")
        # The first dim of every tensor is the batch dim the batcher concatenates along.
        if any(t.shape[0] != -1 for t in [*self.inputs, *self.outputs]):
            raise ValueError("the first dim of every input and output is the batch dim (-1)")
        if self.format == "torchscript" and self.he_compatible:
            raise ValueError("a TorchScript model cannot be declared HE-compatible")
        return self

    @property
    def id(self) -> str:
        """``name:version``, the id audit records and metrics labels use."""
        return f"{self.name}:{self.version}"

    def summary(self) -> dict[str, Any]:
        """The short form `models list` prints."""
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "architecture": self.architecture,
            "format": self.format,
            "he_compatible": self.he_compatible,
            "metrics": self.metrics,
            "created_at": self.created_at.isoformat(),
        }


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key: "10" sorts after "9", "1.2" after "1"."""
    return tuple(int(part) for part in version.split("."))
