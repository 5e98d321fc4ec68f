"""Replicas as real servers (HTTP) on the shared PostgreSQL and Redis: start-up, readiness,
staleness, and the issue's acceptance check (a role revoked by a publish is refused by every
replica within 2 s, and restored within 2 s)."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from secure_aiaas.crypto import init_keys, load_keys
from secure_aiaas.policy import PublishedPolicyStore, read_policy, seal_key_from
from tests.conftest import (
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    provision,
    run_cli,
    service_env,
    start_server,
    stop_server,
)
from tests.policy_publish.conftest import publish, until
from tests.support.inprocess import in_process, make_settings

GRANT = "g, zoe, auditor, acme\n"
ZOE = {"zoe": ("acme", "zoe", "user")}  # a user whom the grant line makes an auditor


def _lean(
    tmp_path: Path,
    name: str,
    keys_dir: Path,
    policy_dir: Path,
    pg_url: str,
    redis_url: str,
    prefix: str,
    **extra: str,
) -> dict[str, str]:
    """A replica's environment: its own data dir; keys, database, audit store and Redis
    shared; no models, HE or scrubber (this is about the policy)."""
    (tmp_path / name).mkdir(exist_ok=True)
    return service_env(
        tmp_path / name,
        keys_dir,
        policy_dir,
        audit_url=pg_url,
        database_url=pg_url,
        SAIAAS_REDIS_URL=redis_url,
        SAIAAS_SCHEDULING__KEY_PREFIX=prefix,
        SAIAAS_POLICY__SOURCE="published",
        SAIAAS_HE__ENABLED="false",
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        **extra,
    )


@pytest.fixture
def prefix(redis_url: str) -> str:
    return "test-" + uuid.uuid4().hex[:12]


def test_a_replica_refuses_to_start_without_a_publication(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str, redis_url: str, prefix: str
) -> None:
    env = _lean(tmp_path, "r1", keys_dir, policy_dir, pg_url, redis_url, prefix)
    server = start_server(env, tmp_path / "r1.log", wait=False)
    try:
        server.process.wait(timeout=60)
    finally:
        stop_server(server)
    assert server.process.returncode != 0
    assert "run `secure-aiaas policy publish`" in server.logs()


@pytest.fixture
def replicas(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, pg_url: str, redis_url: str, prefix: str
) -> Iterator[tuple[list[Server], dict[str, str]]]:
    """Two replicas enforcing the published policy (the periodic check far away: only a
    notice can explain a reload within 2 s)."""
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write(GRANT)
    envs = [
        _lean(
            tmp_path,
            f"r{i}",
            keys_dir,
            policy_dir,
            pg_url,
            redis_url,
            prefix,
            SAIAAS_POLICY__PUBLISHED_CHECK_S="30",
            SAIAAS_POLICY__STALE_AFTER_S="120",
        )
        for i in (1, 2)
    ]
    api_keys = provision(envs[0], STANDARD_TENANTS, {**STANDARD_KEYS, **ZOE})
    published = run_cli(envs[0], "policy", "publish")
    assert published.returncode == 0, published.stderr
    servers: list[Server] = []
    try:
        for i, env in enumerate(envs, start=1):
            servers.append(start_server(env, tmp_path / f"r{i}.log"))
            servers[-1].api_keys = api_keys
        yield servers, envs[0]
    finally:
        for server in servers:
            stop_server(server)


class Watch:
    """From now on, for each replica: when (wall clock) its readiness first shows
    ``version``, and when zoe's audit read first answers ``status``."""

    def __init__(
        self, servers: list[Server], version: str, status: int, timeout: float = 10.0
    ) -> None:
        self.swapped: list[float | None] = [None] * len(servers)
        self.answered: list[float | None] = [None] * len(servers)
        self._deadline = time.monotonic() + timeout
        self._threads = [
            threading.Thread(target=target, args=(i, server, arg))
            for i, server in enumerate(servers)
            for target, arg in ((self._ready, version), (self._zoe, status))
        ]
        for thread in self._threads:
            thread.start()

    def _ready(self, i: int, server: Server, version: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=5) as client:
            while time.monotonic() < self._deadline:
                ready = client.get("/v2/health/ready").json()
                if ready["checks"]["policy"]["version"] == version:
                    self.swapped[i] = time.time()
                    return
                time.sleep(0.01)

    def _zoe(self, i: int, server: Server, status: int) -> None:
        with server.client("zoe") as client:
            while time.monotonic() < self._deadline:
                if client.get("/v1/audit/events", params={"limit": 1}).status_code == status:
                    self.answered[i] = time.time()
                    return
                time.sleep(0.002)

    def join(self) -> tuple[list[float], list[float]]:
        for thread in self._threads:
            thread.join()
        assert None not in self.swapped and None not in self.answered, (self.swapped, self.answered)
        return (
            [float(x) for x in self.swapped if x is not None],
            [float(x) for x in self.answered if x is not None],
        )


def _ready_policy(server: Server) -> dict[str, object]:
    ready = httpx.get(server.base_url + "/v2/health/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    return dict(ready.json()["checks"]["policy"])


def test_a_revoked_role_is_refused_by_both_replicas_within_2s_and_restored(
    replicas: tuple[list[Server], dict[str, str]], policy_dir: Path
) -> None:
    servers, env = replicas
    path = policy_dir / "policy.csv"
    granted = path.read_text()
    v1 = _ready_policy(servers[0])["version"]
    assert all(
        _ready_policy(s)
        == {
            "source": "published",
            "loaded": True,
            "version": v1,
            "fresh": True,
            "rejected_edit": False,
        }
        for s in servers
    )
    Watch(servers, str(v1), 200).join()  # zoe may read her tenant's trail on both
    report = []
    for label, text, status in (
        ("revoked", granted.replace(GRANT, ""), 403),
        ("restored", granted, 200),
    ):
        path.write_text(text)
        version = read_policy(policy_dir, "model.conf", "policy.csv").version
        watch = Watch(servers, version, status)
        published = run_cli(env, "policy", "publish", "--json")
        returned = time.time()
        assert published.returncode == 0, published.stderr
        swapped, answered = watch.join()
        # When the publication was committed (its activation's time, same clock).
        listed = json.loads(run_cli(env, "policy", "published", "--json", "--limit", "1").stdout)[
            "publications"
        ][0]
        assert listed["version"] == version
        committed = datetime.fromisoformat(listed["activated_at"]).timestamp()
        # The acceptance bound: every replica refuses (then allows) within 2 s of the publish.
        assert max(answered) - committed < 2.0, (label, answered, committed)
        report.append(
            f"{label}: replicas enforced it {_ms(swapped, committed)} after the commit "
            f"(readiness), answered {status} {_ms(answered, committed)} after it; "
            f"`policy publish` returned {(returned - committed) * 1000:.0f} ms after it"
        )
    assert _ready_policy(servers[0])["version"] == v1  # restored: the same version again
    print("\n" + "\n".join(report))


def _ms(times: list[float], since: float) -> str:
    return " / ".join(f"{(t - since) * 1000:.0f} ms" for t in times)


def test_a_refused_publication_ages_into_503_and_not_ready(
    tmp_path: Path, pg_url: str, redis_url: str, prefix: str
) -> None:
    """A publication written with the wrong key (someone with only database access): the
    replica keeps the last good policy for stale_after_s, then refuses every request."""
    settings = make_settings(
        tmp_path,
        database_url=pg_url,
        redis_url=redis_url,
        he={"enabled": False},
        privacy={"enabled": False},
        models_dir=tmp_path / "no-models",
        scheduling={"key_prefix": prefix},
        # 15 checks before it may age: a busy machine (tests run side by side) must not
        # starve the watcher into a stale policy before the forgery.
        policy={"source": "published", "stale_after_s": 3.0, "published_check_s": 0.2},
    )
    store = PublishedPolicyStore(
        pg_url, seal_key=seal_key_from(load_keys(settings.keys_dir).data_key)
    )
    store.create_schema()
    good = publish(store, settings.policy_dir)
    init_keys(tmp_path / "other-keys")
    forger = PublishedPolicyStore(
        pg_url, seal_key=seal_key_from(load_keys(tmp_path / "other-keys").data_key)
    )
    try:
        with in_process(settings, STANDARD_TENANTS, STANDARD_KEYS) as app:
            alice = app.headers("alice")
            assert app.client.get("/v1/whoami", headers=alice).status_code == 200
            (settings.policy_dir / "policy.csv").write_text("p, *, *, *, *, allow\n")
            publish(forger, settings.policy_dir, who="os:mallory")
            until(
                lambda: app.client.get("/v1/whoami", headers=alice).status_code == 503, timeout=10
            )
            refused = app.client.get("/v1/whoami", headers=alice)
            assert refused.json()["code"] == "policy_unavailable"
            # Never the forged policy: admin routes stay closed to alice meanwhile.
            assert app.client.get("/v1/admin/policy", headers=alice).status_code in (403, 503)
            ready = app.client.get("/v2/health/ready")
            assert ready.status_code == 503
            state = ready.json()["checks"]["policy"]
            assert state == {
                "source": "published",
                "loaded": True,
                "version": good,
                "fresh": False,
                "rejected_edit": True,
            }
            assert "sealed" not in ready.text and "allow" not in ready.text
            # A real publish (the files restored) puts the replica back without a restart.
            (settings.policy_dir / "policy.csv").write_text(
                (Path(__file__).parents[2] / "policies" / "policy.csv").read_text()
            )
            publish(store, settings.policy_dir)
            until(
                lambda: app.client.get("/v1/whoami", headers=alice).status_code == 200, timeout=10
            )
            assert app.client.get("/v2/health/ready").status_code == 200
    finally:
        forger.dispose()
        store.dispose()


def test_decisions_cost_the_same_in_both_modes(tmp_path: Path, pg_url: str) -> None:
    """The decision path does not touch the origin: the same cached lookups either way."""
    from secure_aiaas.policy import PolicyEngine, PublishedOrigin

    settings = make_settings(tmp_path)
    store = PublishedPolicyStore(pg_url, seal_key=b"k" * 32)
    store.create_schema()
    publish(store, settings.policy_dir)
    files = PolicyEngine(settings.policy_dir)
    published = PolicyEngine(PublishedOrigin(store))
    files.load(), published.load()
    args = ("alice", "user", "acme", "trusted", "model:digits-mlp", "infer")
    assert files.decide_for(*args) == published.decide_for(*args)
    times = {}
    for name, engine in (("files", files), ("published", published)):
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(2000):
                engine.decide_for(*args)
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    store.dispose()
    print(
        f"\n2000 cached decisions: files {times['files'] * 1000:.1f} ms, "
        f"published {times['published'] * 1000:.1f} ms"
    )
