"""Fixtures for the published policy: stores on both backends, Redis, outages on demand."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from secure_aiaas.policy import PublishedPolicyStore, seal_key_from
from secure_aiaas.policy.loader import read_policy_files
from secure_aiaas.storage import normalise_url
from tests.conftest import IN_CI, REDIS_URL, free_port, require_service


def until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.005) -> float:
    """Seconds until ``predicate()`` holds; AssertionError after ``timeout``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def contents(policy_dir: Path) -> dict[str, bytes]:
    return read_policy_files(policy_dir, "model.conf", "policy.csv")


def publish(store: PublishedPolicyStore, policy_dir: Path, who: str = "os:test") -> str:
    return store.publish(
        contents(policy_dir), model_file="model.conf", policy_file="policy.csv", publisher=who
    ).version


def tamper(url: str, *statements: str) -> None:
    """Run ``statements`` as the database's owner would: append-only triggers off first."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            if url.startswith("sqlite"):
                for name in [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT name FROM sqlite_master WHERE type='trigger' "
                            "AND name LIKE 'policy_%'"
                        )
                    )
                ]:
                    conn.execute(text(f"DROP TRIGGER {name}"))
            else:  # a superuser skips ordinary triggers
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def seal_key(keys_dir: Path) -> bytes:
    from secure_aiaas.crypto import load_keys

    return seal_key_from(load_keys(keys_dir).data_key)


@pytest.fixture
def store(db_url: str, seal_key: bytes) -> Iterator[PublishedPolicyStore]:
    published = PublishedPolicyStore(db_url, seal_key=seal_key)
    published.create_schema()
    yield published
    published.dispose()


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def channel(redis_url: str) -> str:
    """A channel of this test's own (other engineers share the Redis)."""
    return f"test-{uuid.uuid4().hex[:12]}:policy:published"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """A Redis server of this test's own (URL in ``.url``), which ``kill()`` takes away."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed (runs in CI)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )

    def kill() -> None:
        if process.poll() is None:
            process.kill()
            process.wait()

    kill.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    until(lambda: _accepts(port), timeout=10, step=0.05)
    try:
        yield kill
    finally:
        kill()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class TcpProxy:
    """Forwards a local port to PostgreSQL; ``cut()`` is a network outage, ``heal()`` ends it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._up = True
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._up = False
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._open.clear()

    def heal(self) -> None:
        self._up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """``pg_url`` reached through a proxy that a test can cut."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        yield pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), proxy
    finally:
        proxy.close()
