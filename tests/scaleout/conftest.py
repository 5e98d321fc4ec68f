"""What the Ray tests share: the service's app served by a local Ray cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.config import Settings
from tests.conftest import IN_CI, REDIS_URL, free_port, service_env

try:
    import ray  # noqa: F401
except ImportError:  # in CI the `test` extra installs it: never skipped there
    if IN_CI:
        raise
    # Locally without ray[serve] (pip install -e '.[ray]'): the cluster tests are not
    # collected; the refusals (which need no Ray) still run.
    collect_ignore_glob = ["test_ray_*.py"]


def shared_state_env(tmp: Path, pg_url: str) -> tuple[dict[str, str], str]:
    """The CLI's environment for a cluster's shared state (audit, tenants and keys on
    PostgreSQL, quotas on Redis under a key prefix of its own, the published policy), and
    that prefix. Keys and policies live under ``tmp``."""
    prefix = "test-" + uuid.uuid4().hex[:12]
    env = service_env(
        tmp,
        tmp / "keys",
        tmp / "policies",
        audit_url=pg_url,
        database_url=pg_url,
        SAIAAS_REDIS_URL=REDIS_URL,
        SAIAAS_SCHEDULING__KEY_PREFIX=prefix,
        SAIAAS_POLICY__SOURCE="published",
    )
    return env, prefix


def replica_settings(
    tmp: Path,
    pg_url: str,
    prefix: str,
    models_dir: Path,
    *,
    policy: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """The replicas' settings on the state `shared_state_env` describes; ``policy`` adds to
    the published source, ``sections`` (privacy, he, llm, scaleout, …) as `Settings` takes
    them."""
    return Settings(
        data_dir=tmp / "data",
        keys_dir=tmp / "keys",
        policy_dir=tmp / "policies",
        models_dir=models_dir,
        database_url=pg_url,
        audit_url=pg_url,
        redis_url=REDIS_URL,
        scheduling={
            "key_prefix": prefix,
            "anonymous_per_address_per_minute": 1_000_000,
            "anonymous_audit_bytes_per_s": 64 << 20,
        },
        policy={"source": "published", **(policy or {})},
        **sections,
    )


@pytest.fixture(scope="package")
def ray_serve() -> Iterator[str]:
    """One local cluster on the CI machine's two cores, with Serve's proxy, for this
    directory's in-process Ray tests; yields the proxy's base URL. Each module deploys its
    app on it (`serving_on_ray`) and deletes it after: a cluster's start and stop cost
    ~10 s of both cores each time. (The CLI's tests start clusters of their own; they come
    first, before this one exists.)"""
    import ray
    from ray import serve

    port = free_port()
    # Replica logs stay in the session directory (the audit store is the record here).
    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@contextmanager
def serving_on_ray(ray_serve: str, settings: Settings) -> Iterator[str]:
    """The app, as `settings` describe it, deployed on the shared cluster until the block
    ends; yields its base URL."""
    from ray import serve

    from secure_aiaas.scaleout import APP_NAME, ingress_application

    serve.run(ingress_application(settings), name=APP_NAME, route_prefix="/")
    try:
        yield ray_serve
    finally:
        serve.delete(APP_NAME)  # its replicas stopped: the next module deploys afresh
