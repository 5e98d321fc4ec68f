"""Replicas of the engine over the real PostgreSQL and Redis: notices, the periodic check,
outages. Each replica has its own store (its own connections), as separate processes do."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from secure_aiaas.errors import PolicyUnavailableError
from secure_aiaas.policy import (
    PolicyEngine,
    PublishedOrigin,
    PublishedPolicyStore,
    RedisNotices,
    announce,
)
from tests.policy_publish.conftest import TcpProxy, publish, until

GRANT = "g, zoe, auditor, acme\n"


@contextmanager
def replicas(
    url: str,
    seal_key: bytes,
    redis_url: str | None,
    channel: str,
    *,
    n: int = 2,
    check_s: float,
    stale_after_s: float = 60.0,
) -> Iterator[list[PolicyEngine]]:
    engines = []
    for _ in range(n):
        notices = RedisNotices(redis_url, channel) if redis_url else None
        engine = PolicyEngine(
            PublishedOrigin(PublishedPolicyStore(url, seal_key=seal_key)),
            reload_interval_s=check_s,
            stale_after_s=stale_after_s,
            notices=notices,
        )
        engine.load()
        engine.start_watching()
        engines.append(engine)
    try:
        yield engines
    finally:
        for engine in engines:
            engine.stop_watching()


def _toggle(policy_dir: Path) -> Callable[[], None]:
    """Each call adds or removes one grant line (a new version every time)."""
    path = policy_dir / "policy.csv"

    def flip() -> None:
        text = path.read_text()
        path.write_text(text.replace(GRANT, "") if GRANT in text else text + GRANT)

    return flip


def _converged(
    engines: list[PolicyEngine], version: str, since: float, *, timeout: float
) -> list[float]:
    """Seconds from ``since`` until each engine enforced ``version`` (all polled at once)."""
    done: dict[int, float] = {}
    while len(done) < len(engines):
        now = time.monotonic()
        assert now - since < timeout, f"not every replica enforced {version} in {timeout} s"
        for i, engine in enumerate(engines):
            if i not in done and engine.version == version:
                done[i] = now - since
        time.sleep(0.001)
    return [done[i] for i in range(len(engines))]


def _listening(engines: list[PolicyEngine]) -> bool:
    return all(
        e._notices is not None and e._notices.listening  # type: ignore[attr-defined]
        for e in engines
    )


@pytest.fixture
def pg_store(pg_url: str, seal_key: bytes, policy_dir: Path) -> Iterator[PublishedPolicyStore]:
    store = PublishedPolicyStore(pg_url, seal_key=seal_key)
    store.create_schema()
    publish(store, policy_dir)
    yield store
    store.dispose()


def test_a_publish_reaches_two_replicas_by_pubsub_within_2s(
    pg_url: str,
    pg_store: PublishedPolicyStore,
    seal_key: bytes,
    redis_url: str,
    channel: str,
    policy_dir: Path,
) -> None:
    flip = _toggle(policy_dir)
    # The periodic check is far away: only the notice can explain a reload within 2 s.
    with replicas(pg_url, seal_key, redis_url, channel, check_s=30.0) as engines:
        until(lambda: _listening(engines), timeout=5)
        latencies: list[list[float]] = [[], []]
        for _ in range(5):
            time.sleep(0.2)  # publishes are not back to back (a check follows a 50 ms gap)
            flip()
            version = publish(pg_store, policy_dir)
            committed = time.monotonic()
            assert announce(redis_url, channel, version) == 2  # both replicas subscribe
            for i, seconds in enumerate(_converged(engines, version, committed, timeout=2)):
                latencies[i].append(seconds)
            assert all(e.fresh and e.last_error is None for e in engines)
    for i, values in enumerate(latencies):
        print(
            f"\npub/sub → replica {i}: median {statistics.median(values) * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms (after the publish committed)"
        )


def test_without_redis_replicas_converge_by_the_periodic_check(
    pg_url: str, pg_store: PublishedPolicyStore, seal_key: bytes, policy_dir: Path
) -> None:
    flip = _toggle(policy_dir)
    dead = "redis://127.0.0.1:1/0"  # nothing listens there: every subscription fails
    with replicas(pg_url, seal_key, dead, "x:policy:published", check_s=0.5) as engines:
        latencies = []
        for _ in range(3):
            flip()
            version = publish(pg_store, policy_dir)
            committed = time.monotonic()
            assert announce(dead, "x:policy:published", version, timeout_s=0.2) is None
            latencies.append(max(_converged(engines, version, committed, timeout=3)))
        assert all(e.fresh for e in engines)
    print(
        f"\nperiodic check (0.5 s), Redis down → both replicas: "
        f"{', '.join(f'{x * 1000:.0f}' for x in latencies)} ms"
    )


def test_redis_lost_and_back_mid_run(
    pg_url: str,
    pg_store: PublishedPolicyStore,
    seal_key: bytes,
    policy_dir: Path,
    private_redis: Callable[[], None],
    tmp_path: Path,
) -> None:
    url: str = private_redis.url  # type: ignore[attr-defined]
    channel = "t:policy:published"
    flip = _toggle(policy_dir)
    with replicas(pg_url, seal_key, url, channel, check_s=0.5) as engines:
        until(lambda: _listening(engines), timeout=5)
        private_redis()  # Redis gone
        until(lambda: not _listening(engines), timeout=5)
        flip()
        version = publish(pg_store, policy_dir)
        assert announce(url, channel, version, timeout_s=0.2) is None
        for engine in engines:
            until(lambda e=engine: e.version == version, timeout=3)
        # A new Redis on the same port: the subscribers come back by themselves.
        import shutil
        import subprocess

        port = url.rsplit(":", 1)[1].split("/")[0]
        redis = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            until(lambda: _listening(engines), timeout=10)
            heard = [e._notices.heard for e in engines]  # type: ignore[attr-defined]
            flip()
            version = publish(pg_store, policy_dir)
            assert announce(url, channel, version) == 2
            for engine in engines:
                until(lambda e=engine: e.version == version, timeout=2)
            assert [e._notices.heard for e in engines] == [h + 1 for h in heard]  # type: ignore[attr-defined]
        finally:
            redis.kill()
            redis.wait()


def test_a_replica_that_cannot_reach_the_database_goes_stale_then_recovers(
    pg_proxy: tuple[str, TcpProxy],
    pg_store: PublishedPolicyStore,
    seal_key: bytes,
    redis_url: str,
    channel: str,
) -> None:
    url, proxy = pg_proxy
    with replicas(url, seal_key, redis_url, channel, n=1, check_s=0.2, stale_after_s=1.0) as (
        engine,
    ):
        args = ("zoe", "user", "acme", "trusted", "identity", "read")
        assert engine.decide_for(*args).allowed
        proxy.cut()  # the database unreachable; Redis is up but cannot confirm anything
        until(lambda: not engine.fresh, timeout=5)
        with pytest.raises(PolicyUnavailableError):
            engine.decide_for(*args)
        state = engine.state()
        assert state["fresh"] is False and state["source"] == "published"
        assert state["version"] == pg_store.current()[1]  # type: ignore[index]
        proxy.heal()
        until(lambda: engine.fresh, timeout=5)
        assert engine.decide_for(*args).allowed


class _CountingOrigin:
    """The real published origin, counting how often the watcher asks it."""

    kind = "published"

    def __init__(self, inner: PublishedOrigin) -> None:
        self.inner = inner
        self.stamps = 0

    def stamp(self) -> object:
        self.stamps += 1
        return self.inner.stamp()

    def read(self) -> object:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def test_a_flood_of_forged_notices_costs_bounded_checks_and_changes_nothing(
    pg_url: str, pg_store: PublishedPolicyStore, seal_key: bytes, redis_url: str, channel: str
) -> None:
    import redis

    origin = _CountingOrigin(PublishedOrigin(PublishedPolicyStore(pg_url, seal_key=seal_key)))
    notices = RedisNotices(redis_url, channel)
    engine = PolicyEngine(origin, reload_interval_s=30.0, notices=notices)  # type: ignore[arg-type]
    version = engine.load().source.version
    engine.start_watching()
    try:
        until(lambda: notices.listening, timeout=5)
        client = redis.Redis.from_url(redis_url)
        sent = 2000
        with client.pipeline(transaction=False) as pipe:
            for i in range(sent):  # names of versions that were never published, and junk
                pipe.publish(channel, json.dumps({"version": f"{i:012x}"}) if i % 2 else "x" * 4096)
            pipe.execute()
        client.close()
        until(lambda: notices.heard == sent, timeout=20)
        checks = origin.stamps
        time.sleep(0.3)
        assert origin.stamps - checks <= 2  # the flood's wake-ups have drained
    finally:
        engine.stop_watching()
    # Checks are bounded by time (one per 50 ms gap), not by the number of notices.
    assert origin.stamps < sent / 10
    assert engine.version == version and engine.fresh and engine.last_error is None


def test_concurrent_publishers_serialise(
    db_url: str, seal_key: bytes, policy_dir: Path, tmp_path: Path
) -> None:
    import shutil
    import threading

    stores = [PublishedPolicyStore(db_url, seal_key=seal_key) for _ in range(4)]
    stores[0].create_schema()
    dirs = []
    for i in range(4):
        copy = tmp_path / f"p{i}"
        shutil.copytree(policy_dir, copy)
        with (copy / "policy.csv").open("a") as fh:
            fh.write(f"g, zoe{i}, auditor, acme\n")
        dirs.append(copy)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for _ in range(3):
                publish(stores[i], dirs[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = stores[0].history()
    for store in stores:
        store.dispose()
    assert errors == []
    seqs = [a.seq for a in history]
    assert seqs == sorted(seqs, reverse=True) == list(range(len(seqs), 0, -1))
    assert all(a.intact for a in history)
    # Each activation's "previous" is the one before it: one line of history, no fork.
    for newer, older in zip(history, history[1:]):
        assert newer.previous == older.version != newer.version
