"""Fixtures for compute scheduling: a Redis key prefix per test, servers with given settings."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import (
    REDIS_URL,
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    provision,
    require_service,
    service_env,
    start_server,
    stop_server,
)

# Extra keys used by these tests (tenant "platform" is the operators').
SCHEDULING_KEYS = {
    **STANDARD_KEYS,
    "bob": ("acme", "bob", "user"),
    "scraper": ("platform", "prom", "metrics-reader"),
    "beta-user": ("beta", "bea", "user"),
    "beta-he": ("beta", "bo", "he-user"),
    "gamma-user": ("gamma", "gil", "user"),
}
SCHEDULING_TENANTS = {**STANDARD_TENANTS, "beta": "trusted", "gamma": "trusted"}


@pytest.fixture
def redis_url() -> str:
    """The real Redis (required in CI)."""
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@contextmanager
def redis_key_prefix() -> Iterator[str]:
    """A Redis key prefix of its own (``SAIAAS_SCHEDULING__KEY_PREFIX``); its keys are
    deleted when the block ends."""
    import redis

    prefix = "test-" + uuid.uuid4().hex[:12]
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    with redis_key_prefix() as prefix:
        yield prefix


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real servers sharing one data dir, keys and policy (replicas of one service)."""
    from secure_aiaas.crypto import init_keys

    started: list[Server] = []
    keys_dir, policy_dir = tmp_path / "keys", tmp_path / "policies"
    init_keys(keys_dir)
    shutil.copytree(REPO / "policies", policy_dir)
    provisioned: dict[str, str] = {}

    def make(**extra: str) -> Server:
        # Quotas are tested on whoami: no text, no ciphertexts, so no worker pools to start.
        env = service_env(
            tmp_path,
            keys_dir,
            policy_dir,
            SAIAAS_HE__ENABLED="false",
            SAIAAS_PRIVACY__ENABLED="false",
            **extra,
        )
        if not provisioned:
            provisioned.update(provision(env, SCHEDULING_TENANTS, SCHEDULING_KEYS))
        server = start_server(env, tmp_path / f"server-{len(started)}.log")
        server.api_keys = dict(provisioned)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            stop_server(server)


def set_limits(server: Server, tenant: str, *args: str) -> None:
    result = server.cli("tenant", "set-limits", tenant, *args)
    assert result.returncode == 0, result.stderr


def audit_records(server: Server) -> list[dict[str, object]]:
    from tests.support.audit import audit_url, stored_records

    records = stored_records(audit_url(server))
    for record in records:
        if isinstance(record.get("details"), str):
            record["details"] = json.loads(record["details"])  # type: ignore[arg-type]
    return records
