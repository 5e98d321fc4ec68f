"""`secure-aiaas serve --engine ray` end to end: the command starts a local cluster, serves
over HTTP (two lean replicas; one whole replica with models, scrubber and HE), and takes it
all down on SIGTERM; the application builder that Serve configs (KubeRay) import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
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

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def _env(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str, **extra: str
) -> dict[str, str]:
    """`--engine ray` on a local 2-CPU cluster, on the machine's PostgreSQL and Redis."""
    require_service("Redis", "127.0.0.1", 6379)
    return service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        audit_url=pg_url,
        database_url=pg_url,
        SAIAAS_REDIS_URL=REDIS_URL,
        SAIAAS_SCHEDULING__KEY_PREFIX="test-" + uuid.uuid4().hex[:12],
        SAIAAS_POLICY__SOURCE="published",
        SAIAAS_LLM__ENABLED="false",
        SAIAAS_ENGINE="ray",
        SAIAAS_SCALEOUT__NUM_CPUS="2",
        **extra,
    )


@contextmanager
def _serving(env: dict[str, str], log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`secure-aiaas serve` (the engine from ``env``) on a free port; killed if still up."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "secure_aiaas.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _until_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("not ready:\n" + log_path.read_text(errors="replace"))


def test_serve_engine_ray_serves_two_replicas_and_stops_on_sigterm(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str
) -> None:
    env = _env(
        tmp_path,
        keys_dir,
        policy_dir,
        pg_url,
        SAIAAS_HE__ENABLED="false",
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_SCALEOUT__REPLICA_NUM_CPUS="0.5",
    )
    api_keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    assert run_cli(env, "policy", "publish").returncode == 0
    log_path = tmp_path / "serve.log"
    with _serving(env, log_path) as (process, url):
        _until_ready(process, url, log_path)
        served_by: set[str] = set()
        deadline = time.monotonic() + 30
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_keys['alice']}"}, timeout=5
        ) as client:
            while len(served_by) < 2 and time.monotonic() < deadline:
                response = client.get("/v1/whoami")
                assert response.status_code == 200, response.text
                served_by.add(response.headers["x-served-by"])
        assert len(served_by) == 2, log_path.read_text(errors="replace")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text(errors="replace")
        with pytest.raises(httpx.HTTPError):  # the proxy went with the cluster
            httpx.get(url + "/v2/health/live", timeout=2)


def test_a_whole_replica_scrubs_and_evaluates_encrypted_requests_on_ray(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str, trained_models_dir: Path
) -> None:
    """The full app in a Ray actor: the scrubber's and the HE pool's worker processes
    (spawned) start inside it; an encrypted request decrypts to the plaintext answer."""
    import numpy as np

    from secure_aiaas.sdk import EncryptedClient

    env = _env(
        tmp_path,
        keys_dir,
        policy_dir,
        pg_url,
        SAIAAS_MODELS_DIR=str(trained_models_dir),
        SAIAAS_SCALEOUT__INGRESS_MIN_REPLICAS="1",
        SAIAAS_SCALEOUT__INGRESS_MAX_REPLICAS="1",
    )
    api_keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    assert run_cli(env, "policy", "publish").returncode == 0
    log_path = tmp_path / "serve.log"
    with _serving(env, log_path) as (process, url):
        _until_ready(process, url, log_path)
        alice = {"Authorization": f"Bearer {api_keys['alice']}"}
        scrubbed = httpx.post(
            url + "/v1/privacy/scrub",
            headers=alice,
            json={"texts": ["Call John Smith at john.smith@example.com"]},
            timeout=60,
        )
        assert scrubbed.status_code == 200, scrubbed.text
        assert "John" not in scrubbed.text and "example.com" not in scrubbed.text
        x = np.random.default_rng(0).integers(0, 17, size=(3, 64)).astype(np.float32)
        plain = httpx.post(
            url + "/v2/models/digits-mlp/infer",
            headers=alice,
            json={
                "inputs": [
                    {
                        "name": "input",
                        "shape": [3, 64],
                        "datatype": "FP32",
                        "data": x.ravel().tolist(),
                    }
                ]
            },
            timeout=60,
        )
        assert plain.status_code == 200, plain.text
        expected = np.asarray(plain.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, -1)
        with EncryptedClient(url, api_keys["medco-he"], timeout=120) as client:
            logits = client.predict("digits-mlp", x)
        np.testing.assert_allclose(logits, expected, atol=0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text(errors="replace")


def test_what_a_replica_would_refuse_is_refused_before_ray_starts(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str
) -> None:
    """No publication yet: a replica's start-up would fail, and Serve would report only
    "failed to start 6 times"; the command says why, and starts no cluster."""
    env = _env(
        tmp_path,
        keys_dir,
        policy_dir,
        pg_url,
        SAIAAS_HE__ENABLED="false",
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
    )
    done = run_cli(env, "serve", "--port", str(free_port()))
    assert done.returncode == 1
    assert "--engine ray: policy cannot be loaded" in done.stderr
    assert "run `secure-aiaas policy publish`" in done.stderr
    assert "Ray instance" not in done.stdout + done.stderr


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
