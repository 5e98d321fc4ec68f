"""`secure-aiaas serve --engine ray` end to end: the command starts a local cluster, serves
two replicas over HTTP, and takes it all down on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    IN_CI,
    REDIS_URL,
    REPO,
    STANDARD_KEYS,
    STANDARD_TENANTS,
    free_port,
    provision,
    require_service,
    run_cli,
    service_env,
)

try:
    import ray  # noqa: F401
except ImportError:  # in CI the `test` extra installs it: never skipped there
    if IN_CI:
        raise
    pytest.skip(
        "ray[serve] not installed (pip install -e '.[ray]'); runs in CI", allow_module_level=True
    )

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_serve_engine_ray_serves_two_replicas_and_stops_on_sigterm(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    env = service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        audit_url=pg_url,
        database_url=pg_url,
        SAIAAS_REDIS_URL=REDIS_URL,
        SAIAAS_SCHEDULING__KEY_PREFIX="test-" + uuid.uuid4().hex[:12],
        SAIAAS_POLICY__SOURCE="published",
        SAIAAS_HE__ENABLED="false",
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_LLM__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_ENGINE="ray",
        SAIAAS_SCALEOUT__NUM_CPUS="2",
        SAIAAS_SCALEOUT__REPLICA_NUM_CPUS="0.5",
    )
    api_keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    assert run_cli(env, "policy", "publish").returncode == 0
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "secure_aiaas.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        served_by: set[str] = set()
        deadline = time.monotonic() + 90
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {api_keys['alice']}"},
            timeout=5,
        ) as client:
            while len(served_by) < 2 and time.monotonic() < deadline:
                assert process.poll() is None, log_path.read_text(errors="replace")
                try:
                    response = client.get("/v1/whoami")
                except httpx.HTTPError:
                    time.sleep(0.2)
                    continue
                if response.status_code == 200:
                    served_by.add(response.headers["x-served-by"])
                else:
                    time.sleep(0.2)
        assert len(served_by) == 2, log_path.read_text(errors="replace")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text(errors="replace")
        with pytest.raises(httpx.HTTPError):  # the proxy went with the cluster
            httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    from secure_aiaas.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_application_builder_of_serve_configs_refuses_and_builds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    """KubeRay's `import_path`: Serve calls the builder with the config's args."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    from secure_aiaas.errors import ConfigurationError
    from secure_aiaas.scaleout import app_from_environment

    for name in [n for n in os.environ if n.startswith("SAIAAS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SAIAAS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigurationError, match="SAIAAS_REDIS_URL"):
        call_user_app_builder_with_args_if_necessary(app_from_environment, {})
    from secure_aiaas.config import get_settings

    get_settings.cache_clear()
    for name, value in {
        "SAIAAS_DATABASE_URL": "postgresql://db.internal/saiaas",
        "SAIAAS_AUDIT_URL": "postgresql://db.internal/saiaas",
        "SAIAAS_REDIS_URL": "redis://cache.internal:6379/0",
        "SAIAAS_POLICY__SOURCE": "published",
        "SAIAAS_SCALEOUT__INGRESS_MAX_REPLICAS": "4",
    }.items():
        monkeypatch.setenv(name, value)
    application = call_user_app_builder_with_args_if_necessary(app_from_environment, {})
    assert isinstance(application, Application)
