"""`secure-aiaas serve --workers 2` over real HTTP: what each worker process keeps for itself
must not show. Metrics are merged (Prometheus multiprocess mode), quotas are shared through
Redis, a policy edit and a revocation reach every worker, two audit writers keep one chain,
and a worker killed with ``kill -9`` is replaced without its live gauges staying behind.

Which worker answered is read from the per-process metric files uvicorn's workers write:
each test goes on until both have answered, so none passes on one worker alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    REDIS_URL,
    Server,
    key_id_of,
    private_server,
    require_service,
    stop_server,
)
from tests.scheduling.conftest import (
    SCHEDULING_KEYS,
    SCHEDULING_TENANTS,
    redis_key_prefix,
    set_limits,
)
from tests.support.audit import audit_url, stored_records
from tests.support.processes import descendants_running

pytestmark = pytest.mark.redis

# Keys of their own: a test that spends, revokes or denies one affects no other test.
KEYS = {
    **SCHEDULING_KEYS,
    "quota-user": ("gamma", "gus", "user"),
    "revoked-user": ("beta", "ben", "user"),
    "denied-user": ("acme", "dan", "user"),
}


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two uvicorn workers on Redis (needed for --workers), SQLite audit, no models."""
    require_service("Redis", "127.0.0.1", 6379)
    with redis_key_prefix() as prefix:
        server = private_server(
            tmp_path_factory.mktemp("workers"),
            KEYS,
            tenants=SCHEDULING_TENANTS,
            workers=2,
            SAIAAS_REDIS_URL=REDIS_URL,
            SAIAAS_SCHEDULING__KEY_PREFIX=prefix,
            SAIAAS_HE__ENABLED="false",
            SAIAAS_PRIVACY__ENABLED="false",
            SAIAAS_MODELS_DIR=str(tmp_path_factory.mktemp("no-models")),
        )
        try:
            yield server
        finally:
            stop_server(server)


def _answers_by_worker(server: Server, **labels: str) -> dict[int, float]:
    """``saiaas_requests_total`` per worker process (its own metric file), summed over the
    samples whose labels include ``labels``."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[int, float] = {}
    for path in (server.data_dir / "prometheus").glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        total = 0.0
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, sample_labels, _help = json.loads(key)
            if name == "saiaas_requests_total" and labels.items() <= sample_labels.items():
                total += value
        counts[pid] = total
    return counts


def _on_every_worker(
    server: Server, send: Callable[[], int], expected: int, *, rounds: int = 20
) -> list[int]:
    """Send ``send`` from 16 threads, on connections of their own, in rounds until both
    workers have answered with ``expected`` more often than before; every status seen."""
    before = _answers_by_worker(server, status=str(expected))
    statuses: list[int] = []
    with ThreadPoolExecutor(16) as pool:
        for _ in range(rounds):
            statuses += list(pool.map(lambda _: send(), range(32)))
            now = _answers_by_worker(server, status=str(expected))
            grown = [pid for pid, n in now.items() if n > before.get(pid, 0.0)]
            if len(grown) >= 2:
                return statuses
    raise AssertionError(f"not every worker answered {expected}: {before} -> {now}")


def _get(server: Server, who: str, path: str = "/v1/whoami") -> Callable[[], int]:
    headers = {"Authorization": f"Bearer {server.api_keys[who]}"}
    return lambda: httpx.get(server.base_url + path, headers=headers, timeout=30).status_code


def _worker_pids(server: Server) -> set[int]:
    spawned = descendants_running(server.process.pid, "multiprocessing.spawn", recursive=False)
    return {child.pid for child in spawned}


def _kill_under_load(server: Server, pid: int, after: int) -> list[tuple[int, str | None]]:
    """alice's whoami from 16 threads: 200 requests, kill -9 of ``pid``, ``after`` more;
    each answer's status (0: its connection was lost) and request id."""
    headers = {"Authorization": f"Bearer {server.api_keys['alice']}"}

    def send(_: int) -> tuple[int, str | None]:
        try:
            response = httpx.get(server.base_url + "/v1/whoami", headers=headers, timeout=30)
        except httpx.HTTPError:
            return 0, None  # a connection of a killed worker
        return response.status_code, response.headers.get("x-request-id")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(200)))
        os.kill(pid, signal.SIGKILL)
        answers += list(pool.map(send, range(after)))
    return answers


def test_metrics_are_the_sum_of_every_workers_whichever_answers_the_scrape(
    workers_server: Server,
) -> None:
    server = workers_server
    _on_every_worker(server, _get(server, "alice"), 200)
    served = -1.0
    while served != (now := sum(_answers_by_worker(server, route="/v1/whoami").values())):
        served = now  # a request is counted as its response ends: until two reads agree
        time.sleep(0.2)
    headers = {"Authorization": f"Bearer {server.api_keys['scraper']}"}
    for _ in range(6):  # connections of their own: both workers answer some of the scrapes
        scraped = httpx.get(server.base_url + "/metrics", headers=headers, timeout=30)
        assert scraped.status_code == 200
        merged = sum(
            float(line.rpartition(" ")[2])
            for line in scraped.text.splitlines()
            if line.startswith("saiaas_requests_total{") and 'route="/v1/whoami"' in line
        )
        assert merged == served
        assert "pid=" not in scraped.text  # summed over the workers, not listed per process


def test_a_tenants_rate_limit_is_shared_by_the_workers(workers_server: Server) -> None:
    server = workers_server
    set_limits(server, "gamma", "--rpm", "12")
    statuses = _on_every_worker(server, _get(server, "quota-user"), 429)
    # The limit is the tenant's, not each worker's: 12 in the minute, however they spread.
    assert statuses.count(200) == 12 and set(statuses) == {200, 429}


def test_a_revoked_key_is_refused_by_every_worker_within_1s(workers_server: Server) -> None:
    server = workers_server
    _on_every_worker(server, _get(server, "revoked-user"), 200)  # cached by both
    assert server.cli("apikey", "revoke", key_id_of(server, "ben"), "--json").returncode == 0
    time.sleep(1.0)
    statuses = _on_every_worker(server, _get(server, "revoked-user"), 401)
    assert set(statuses) == {401}


def test_a_policy_edit_reaches_every_worker_and_its_restore_too(workers_server: Server) -> None:
    server = workers_server
    path = server.policy_dir / "policy.csv"
    original = path.read_text()
    denied = _get(server, "denied-user")
    try:
        path.write_text(original + "p, subject:dan, acme, identity, read, deny\n")
        deadline = time.monotonic() + 10
        while denied() != 403:
            assert time.monotonic() < deadline, "the edit was not loaded"
            time.sleep(0.2)
        time.sleep(2.0)  # the other worker's reload too (each watches the files)
        assert set(_on_every_worker(server, denied, 403)) == {403}
    finally:
        path.write_text(original)
    deadline = time.monotonic() + 10
    while denied() != 200:
        assert time.monotonic() < deadline, "the restore was not loaded"
        time.sleep(0.2)
    time.sleep(2.0)
    assert set(_on_every_worker(server, denied, 200)) == {200}


def test_a_worker_killed_mid_load_is_replaced_and_the_chain_holds(workers_server: Server) -> None:
    """Every 200 has its record, the two writers' records form one chain that verifies, and
    the dead worker's live gauges leave the merged view."""
    server = workers_server
    pids = _worker_pids(server)
    assert len(pids) == 2
    victim = min(pids)
    answers = _kill_under_load(server, victim, 200)
    deadline = time.monotonic() + 60
    while len(_worker_pids(server) - {victim}) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    replacement = (_worker_pids(server) - pids).pop()
    _on_every_worker(server, _get(server, "alice"), 200)
    assert _answers_by_worker(server, status="200").get(replacement, 0) > 0
    assert {status for status, _ in answers} <= {0, 200}
    assert [status for status, _ in answers[200:]].count(200) > 100  # the service went on

    scraped = httpx.get(
        server.base_url + "/metrics",
        headers={"Authorization": f"Bearer {server.api_keys['scraper']}"},
        timeout=30,
    )
    assert scraped.status_code == 200
    assert not list((server.data_dir / "prometheus").glob(f"gauge_live*_{victim}.db"))

    recorded = {r["request_id"] for r in stored_records(audit_url(server))}
    assert all(rid in recorded for status, rid in answers if status == 200)
    verified = server.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _writer_children(server: Server) -> dict[int, int]:
    """Each worker's audit writer process: worker pid → writer pid."""
    found = {}
    for worker in _worker_pids(server):
        writers = descendants_running(worker, "secure_aiaas.audit.writer_process")
        if writers:
            found[worker] = writers[0].pid
    return found


def test_one_workers_audit_writer_killed_mid_commit_leaves_one_chain(
    workers_server: Server,
) -> None:
    """kill -9 of one worker's writer while both append to the one SQLite chain: that
    worker answers 503 until its new writer is up, never a 200 without a record; the other
    worker goes on; the chain verifies."""
    server = workers_server
    writers = _writer_children(server)
    assert len(writers) == 2
    victim = min(writers.values())
    answers = _kill_under_load(server, victim, 400)
    deadline = time.monotonic() + 30
    while len(now := _writer_children(server)) < 2 or victim in now.values():
        assert time.monotonic() < deadline, "no new audit writer"
        time.sleep(0.1)
    assert set(_on_every_worker(server, _get(server, "alice"), 200)) <= {200, 503}
    assert {status for status, _ in answers} <= {200, 503}
    assert [status for status, _ in answers[200:]].count(200) > 100  # the other worker
    recorded = {r["request_id"] for r in stored_records(audit_url(server))}
    assert all(rid in recorded for status, rid in answers if status == 200)
    verified = server.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_only_the_dead_workers_live_gauges_are_dropped(tmp_path: Path) -> None:
    from secure_aiaas.metrics import forget_dead_workers

    exited = subprocess.Popen(["true"])
    exited.wait()
    dead, alive = exited.pid, os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_livemax_{dead}.db",
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"gauge_livemax_{alive}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers(str(tmp_path))
    forget_dead_workers(str(tmp_path))  # nothing left to drop: no error either
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"histogram_{dead}.db", *names[-2:]]
    )
