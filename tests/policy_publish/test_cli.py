"""`secure-aiaas policy publish|published`: validated like `policy check`, audited
write-ahead, announced over Redis with the version only."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.crypto import load_keys
from secure_aiaas.policy import PublishedPolicyStore, seal_key_from
from tests.conftest import provision, run_cli, service_env
from tests.policy_publish.conftest import tamper, until
from tests.support.outage import Outage


@pytest.fixture
def env(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> dict[str, str]:
    values = service_env(tmp_path, keys_dir, policy_dir)
    assert run_cli(values, "audit", "init").returncode == 0
    return values


def _store(env: dict[str, str]) -> PublishedPolicyStore:
    url = env.get("SAIAAS_DATABASE_URL") or f"sqlite:///{Path(env['SAIAAS_DATA_DIR'])}/registry.db"
    return PublishedPolicyStore(
        url, seal_key=seal_key_from(load_keys(Path(env["SAIAAS_KEYS_DIR"])).data_key)
    )


def _records(env: dict[str, str]) -> list[dict[str, Any]]:
    store = SqlAuditStore(f"sqlite:///{Path(env['SAIAAS_DATA_DIR']) / 'audit.db'}")
    try:
        rows = list(store.iter_records())
    finally:
        store.dispose()
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows


def _published(env: dict[str, str]) -> list[dict[str, Any]]:
    listed = run_cli(env, "policy", "published", "--json")
    return list(json.loads(listed.stdout)["publications"])


def test_publish_prints_one_object_and_is_idempotent(env: dict[str, str]) -> None:
    check = json.loads(run_cli(env, "policy", "check", "--json").stdout)
    first = run_cli(env, "policy", "publish", "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)  # exactly one object
    assert result["version"] == check["version"] and result["changed"] is True
    assert result["previous"] is None and result["files"] == ["model.conf", "policy.csv"]
    again = json.loads(run_cli(env, "policy", "publish", "--json").stdout)
    assert again["changed"] is False and again["publication"] == result["publication"]
    text = run_cli(env, "policy", "publish")
    assert "already the published version" in text.stdout
    assert [p["seq"] for p in _published(env)] == [1]


def test_an_invalid_policy_is_refused_and_nothing_changes(
    env: dict[str, str], policy_dir: Path
) -> None:
    assert run_cli(env, "policy", "publish").returncode == 0
    before, records = _published(env), len(_records(env))
    path = policy_dir / "policy.csv"
    line = len(path.read_text().splitlines()) + 1
    with path.open("a") as fh:
        fh.write("p, user, *, identity\n")
    refused = run_cli(env, "policy", "publish")
    assert refused.returncode == 1
    assert f"policy.csv:{line}: a 'p' line needs 5 fields" in refused.stderr
    as_json = run_cli(env, "policy", "publish", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["valid"] is False
    assert _published(env) == before
    assert len(_records(env)) == records  # refused before anything: nothing to record


def test_a_global_role_granted_in_a_customer_tenant_is_refused(
    env: dict[str, str], policy_dir: Path
) -> None:
    provision(env, {"acme": "trusted", "platform": "trusted"}, {})
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, security-admin, acme\n")
    refused = run_cli(env, "policy", "publish")
    assert refused.returncode == 1 and "not an operator tenant" in refused.stderr
    assert _published(env) == []


def test_publish_is_audited_attempt_then_outcome_without_rules(
    env: dict[str, str], policy_dir: Path
) -> None:
    first = json.loads(run_cli(env, "policy", "publish", "--json").stdout)
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, auditor, acme\n")
    second = json.loads(run_cli(env, "--actor", "sam.sec", "policy", "publish", "--json").stdout)
    rows = [r for r in _records(env) if r["action"] == "policy.publish"]
    assert [r["decision"] for r in rows] == ["attempt", "allow", "attempt", "allow"]
    attempt, outcome = rows[2], rows[3]
    assert attempt["seq"] < outcome["seq"] and attempt["request_id"] == outcome["request_id"]
    assert attempt["object"] == "admin:policy" and attempt["tenant"] is None
    assert attempt["details"]["version"] == second["version"]
    assert attempt["details"]["previous"] == first["version"]
    assert attempt["details"]["files"] == ["model.conf", "policy.csv"]
    assert attempt["details"]["by"]["actor"] == "sam.sec"
    assert outcome["details"]["publication"] == 2 and outcome["details"]["changed"] is True
    trail = json.dumps(rows)
    for rule_text in ("zoe", "auditor", "he-context", "trust:sensitive", "keyMatch"):
        assert rule_text not in trail
    assert _published(env)[0]["publisher"].endswith(" actor:sam.sec")


def test_nothing_is_published_when_the_attempt_cannot_be_recorded(env: dict[str, str]) -> None:
    with Outage(f"sqlite:///{Path(env['SAIAAS_DATA_DIR']) / 'audit.db'}"):
        refused = run_cli(env, "policy", "publish")
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr
    assert _published(env) == []


def test_published_flags_a_publication_edited_in_the_database(env: dict[str, str]) -> None:
    assert run_cli(env, "policy", "publish").returncode == 0
    tamper(
        f"sqlite:///{Path(env['SAIAAS_DATA_DIR'])}/registry.db",
        "UPDATE policy_activations SET publisher = 'os:someone-else'",
    )
    listed = run_cli(env, "policy", "published")
    assert listed.returncode == 1 and "REFUSED" in listed.stdout


@pytest.fixture
def shared_env(env: dict[str, str], pg_url: str, redis_url: str) -> Iterator[dict[str, str]]:
    prefix = "test-" + uuid.uuid4().hex[:12]
    yield {
        **env,
        "SAIAAS_DATABASE_URL": pg_url,
        "SAIAAS_REDIS_URL": redis_url,
        "SAIAAS_SCHEDULING__KEY_PREFIX": prefix,
    }


def test_publish_announces_only_the_version(shared_env: dict[str, str]) -> None:
    import redis

    channel = shared_env["SAIAAS_SCHEDULING__KEY_PREFIX"] + ":policy:published"
    client = redis.Redis.from_url(shared_env["SAIAAS_REDIS_URL"])
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    messages: list[bytes] = []

    def listen() -> None:
        while not messages:
            message = pubsub.get_message(timeout=0.2)
            if message is not None:
                messages.append(message["data"])

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        result = json.loads(run_cli(shared_env, "policy", "publish", "--json").stdout)
        until(lambda: bool(messages), timeout=10)
    finally:
        listener.join(5)
        pubsub.close()
        client.close()
    assert result["notified"] == 1
    assert json.loads(messages[0]) == {"version": result["version"]}
    store = _store(shared_env)
    try:
        assert store.current() == (1, result["version"])
    finally:
        store.dispose()


def test_publish_without_redis_still_publishes(env: dict[str, str]) -> None:
    dead = {**env, "SAIAAS_REDIS_URL": "redis://127.0.0.1:1/0"}
    published = run_cli(dead, "policy", "publish")
    assert published.returncode == 0 and "Redis could not be reached" in published.stdout
    assert len(_published(env)) == 1


def test_explain_published_shows_what_replicas_enforce(
    env: dict[str, str], policy_dir: Path
) -> None:
    provision(env, {"acme": "trusted"}, {"zoe": ("acme", "zoe", "user")})
    args = ("policy", "explain", "zoe", "acme", "audit:own", "read", "--json")
    nothing = run_cli(env, *args, "--published")
    assert nothing.returncode == 1 and "policy publish" in nothing.stderr
    assert run_cli(env, "policy", "publish").returncode == 0
    with (policy_dir / "policy.csv").open("a") as fh:  # edited, not published
        fh.write("g, zoe, auditor, acme\n")
    assert json.loads(run_cli(env, *args).stdout)["allowed"] is True
    assert json.loads(run_cli(env, *args, "--published").stdout)["allowed"] is False
