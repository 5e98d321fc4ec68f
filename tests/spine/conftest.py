"""The spine's servers: authentication, policy and audit. Nothing here sends text or
ciphertexts, so they run without the scrubber's and HE's worker processes (each costs
seconds per start); the routes that need them are tested with them elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import service_env

WITHOUT_WORKERS = {"SAIAAS_PRIVACY__ENABLED": "false", "SAIAAS_HE__ENABLED": "false"}


@pytest.fixture
def server_env(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> dict[str, str]:
    return service_env(tmp_path, keys_dir, policy_dir, **WITHOUT_WORKERS)
