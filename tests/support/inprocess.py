"""The in-process tier: the real app (`create_app`) with its real stores, driven by
Starlette's TestClient — for behaviour that is not about HTTP itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from secure_aiaas.api.app import create_app
from secure_aiaas.auth import Registry
from secure_aiaas.config import Settings
from secure_aiaas.crypto import init_keys, load_keys

REPO = Path(__file__).resolve().parents[2]


@dataclass
class InProcess:
    client: TestClient
    settings: Settings
    api_keys: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_keys[who]}"}

    @property
    def pipeline(self) -> Any:
        return self.client.app.state.pipeline  # type: ignore[attr-defined]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a private service under ``tmp_path`` (keys made, policies copied)."""
    keys_dir = tmp_path / "keys"
    if not keys_dir.exists():
        init_keys(keys_dir)
    policy_dir = tmp_path / "policies"
    if not policy_dir.exists():
        shutil.copytree(REPO / "policies", policy_dir)
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": tmp_path / "data",
        "keys_dir": keys_dir,
        "policy_dir": policy_dir,
        "scheduling": {
            "anonymous_per_address_per_minute": 1_000_000,
            "anonymous_audit_bytes_per_s": 64 << 20,
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


def provision_settings(
    settings: Settings,
    tenants: dict[str, str],
    keys: dict[str, tuple[str, str, str]],
    operators: frozenset[str] = frozenset({"platform"}),
) -> dict[str, str]:
    registry = Registry(
        settings.resolved_database_url(), load_keys(settings.keys_dir).apikey_hmac_key
    )
    registry.create_schema()
    try:
        existing = {t.name for t in registry.list_tenants()}
        for name, trust in tenants.items():
            if name not in existing:
                registry.create_tenant(name, trust, operator=name in operators)
        return {
            label: registry.create_api_key(tenant, subject, role)[0]
            for label, (tenant, subject, role) in keys.items()
        }
    finally:
        registry.dispose()


@contextmanager
def in_process(
    settings: Settings, tenants: dict[str, str], keys: dict[str, tuple[str, str, str]]
) -> Iterator[InProcess]:
    """The app started (lifespan run) with tenants and keys provisioned first."""
    api_keys = provision_settings(settings, tenants, keys)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield InProcess(client=client, settings=settings, api_keys=api_keys)
