"""`--engine ray` refuses per-process state before Ray starts (no Ray needed here)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.config import Settings
from secure_aiaas.scaleout import shared_state_problems
from secure_aiaas.scaleout.served_by import ServedBy
from tests.conftest import run_cli, service_env

SHARED: dict[str, Any] = {
    "database_url": "postgresql://db.internal/saiaas",
    "audit_url": "postgresql://db.internal/saiaas",
    "redis_url": "redis://cache.internal:6379/0",
    "policy": {"source": "published"},
}


def _settings(tmp_path: Path, replicas: int = 2, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "scaleout": {"ingress_min_replicas": 1, "ingress_max_replicas": replicas},
        **overrides,
    }
    return Settings(**values)


def test_every_shared_piece_configured_is_accepted(tmp_path: Path) -> None:
    assert shared_state_problems(_settings(tmp_path, **SHARED)) == []


@pytest.mark.parametrize(
    ("unset", "value", "names"),
    [
        ("database_url", None, "SAIAAS_DATABASE_URL"),
        ("database_url", "sqlite:////tmp/registry.db", "SAIAAS_DATABASE_URL"),
        ("audit_url", None, "SAIAAS_AUDIT_URL"),
        ("redis_url", None, "SAIAAS_REDIS_URL"),
        ("policy", {"source": "files"}, "SAIAAS_POLICY__SOURCE=published"),
    ],
)
def test_each_per_process_piece_is_refused_by_name(
    tmp_path: Path, unset: str, value: object, names: str
) -> None:
    problems = shared_state_problems(_settings(tmp_path, **{**SHARED, unset: value}))
    assert len(problems) == 1 and names in problems[0], problems


def test_the_defaults_are_refused_for_two_replicas_and_say_what_to_configure(
    tmp_path: Path,
) -> None:
    problems = shared_state_problems(_settings(tmp_path))
    assert len(problems) == 4
    joined = "\n".join(problems)
    for name in ("SAIAAS_DATABASE_URL", "SAIAAS_AUDIT_URL", "SAIAAS_REDIS_URL", "published"):
        assert name in joined


def test_one_replica_may_run_on_the_embedded_stores(tmp_path: Path) -> None:
    assert shared_state_problems(_settings(tmp_path, replicas=1)) == []


def test_an_autoscaling_range_is_judged_by_its_maximum(tmp_path: Path) -> None:
    settings = _settings(tmp_path, replicas=3)
    assert settings.scaleout.ingress_min_replicas == 1
    assert any("3 ingress replicas" in p for p in shared_state_problems(settings))


def test_ongoing_requests_below_a_batch_are_refused(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        replicas=1,
        scaleout={"max_ongoing_requests": 5, "ingress_min_replicas": 1, "ingress_max_replicas": 1},
        inference={"max_batch_size": 16},
        llm={"max_batch_size": 8},
    )
    (problem,) = shared_state_problems(settings)
    assert "MAX_ONGOING_REQUESTS (5)" in problem and "(16)" in problem


def test_min_replicas_above_max_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ingress_min_replicas"):
        _settings(tmp_path, scaleout={"ingress_min_replicas": 3, "ingress_max_replicas": 2})


@pytest.mark.parametrize("how", ["option", "SAIAAS_ENGINE", "SAIAAS_SCALEOUT__ENGINE"])
def test_serve_refuses_before_ray_starts(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, how: str
) -> None:
    extra = {} if how == "option" else {how: "ray"}
    env = service_env(tmp_path, keys_dir, policy_dir, **extra)
    args = ["serve", "--engine", "ray"] if how == "option" else ["serve"]
    done = run_cli(env, *args)
    assert done.returncode != 0
    assert "--engine ray refused" in done.stderr
    assert "SAIAAS_REDIS_URL" in done.stderr and "SAIAAS_DATABASE_URL" in done.stderr
    # Refused before any cluster: Ray never printed a word.
    assert "Ray" not in done.stdout + done.stderr.replace("--engine ray", "")


def test_an_unknown_engine_is_refused(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> None:
    done = run_cli(service_env(tmp_path, keys_dir, policy_dir), "serve", "--engine", "k8s")
    assert done.returncode != 0 and "local or ray" in done.stderr


def test_served_by_names_the_replica_on_every_http_response() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": [(b"a", b"1")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def record(message: Any) -> None:
        sent.append(dict(message))

    async def nothing() -> Any:
        return {}

    asyncio.run(ServedBy(app, replica="r1abc")({"type": "http"}, nothing, record))
    assert sent[0]["headers"] == [(b"a", b"1"), (b"x-served-by", b"r1abc")]
    assert sent[1] == {"type": "http.response.body", "body": b"{}"}
