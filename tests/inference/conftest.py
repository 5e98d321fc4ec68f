"""Real models for the inference tests: the run's trained built-in models (`trained_models_dir`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from secure_aiaas.inference import ModelRegistry


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # the service runs on asyncio (uvicorn); the batcher uses asyncio APIs


@pytest.fixture(scope="session")
def trained_dir(trained_models_dir: Path) -> Path:
    """A data dir holding digits-mlp, breast-cancer-lr and text-embed, version 1 each: the
    run's own (`trained_models_dir`, trained once for every test process). Read-only:
    tests that change a registry copy it first (`data_dir`)."""
    return trained_models_dir


@pytest.fixture
def data_dir(trained_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the small models (text-embed left out: 90 MB) for tests that write."""
    target = tmp_path / "data"
    for name in ("digits-mlp", "breast-cancer-lr"):
        shutil.copytree(trained_dir / "models" / name, target / "models" / name)
    return target


@pytest.fixture(scope="session")
def registry(trained_dir: Path) -> ModelRegistry:
    return ModelRegistry(trained_dir)


@pytest.fixture(scope="session")
def digits(registry: ModelRegistry):  # type: ignore[no-untyped-def]
    return registry.load("digits-mlp", device="cpu")


@pytest.fixture(scope="session")
def text_embed(registry: ModelRegistry):  # type: ignore[no-untyped-def]
    return registry.load("text-embed", device="cpu")
