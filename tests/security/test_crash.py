"""kill -9 of the server under load, ten times in a row, on one audit store (real server,
real SQLite): the chains verify, every 2xx a client saw has its record, and write-ahead
attempts left without an outcome are at most the side-effect requests in flight, reported by
`audit verify` as orphans, not as damage."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
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

KILLS = 10


@dataclass
class Load:
    """Client threads that remember what they were answered and what was cut off."""

    server: Server
    keys: dict[str, str]
    seen: list[tuple[str, int]] = field(default_factory=list)  # (request id, status)
    cut_side_effects: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _loop(self, who: str, side_effect: bool) -> None:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        with httpx.Client(base_url=self.server.base_url, headers=headers, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    if side_effect:
                        response = client.post("/v1/audit/exports", json={"since": "2999-01-01"})
                    else:
                        response = client.get("/v1/whoami")
                except httpx.HTTPError:
                    if side_effect:
                        with self._lock:
                            self.cut_side_effects += 1
                    return  # the server is gone
                with self._lock:
                    self.seen.append(
                        (response.headers.get("x-request-id", ""), response.status_code)
                    )

    def run(self, seconds: float) -> None:
        threads = [threading.Thread(target=self._loop, args=("alice", False)) for _ in range(4)]
        threads += [
            threading.Thread(target=self._loop, args=("acme-auditor", True)) for _ in range(2)
        ]
        for t in threads:
            t.start()
        time.sleep(seconds)
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=10)
        for t in threads:
            t.join(timeout=15)


def _wait_serving(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.base_url + "/v2/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.process.poll() is None, server.logs()
        time.sleep(0.1)
    raise AssertionError("server did not come up")


@pytest.mark.slow
def test_kill_9_under_load_ten_times(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> None:
    # A lean server (no models, no HE, no scrubber): what is under test is the audit path.
    env = service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        SAIAAS_HE__ENABLED="false",
        SAIAAS_MODELS_DIR=str(tmp_path / "no-models"),
        SAIAAS_PRIVACY__ENABLED="false",
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    seen: list[tuple[str, int]] = []
    cut = 0
    for _ in range(KILLS):
        server = start_server(env, tmp_path / "server.log", wait=False)
        _wait_serving(server)
        load = Load(server, keys)
        load.run(0.8)
        seen += load.seen
        cut += load.cut_side_effects
    server = start_server(env, tmp_path / "server.log", wait=False)
    _wait_serving(server)
    stop_server(server)  # a clean shutdown signs the final checkpoint

    verify = run_cli(env, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] and report["damage"] is None
    assert report["orphaned_attempts"]["count"] <= cut

    store = SqlAuditStore(f"sqlite:///{tmp_path / 'data' / 'audit.db'}")
    try:
        outcomes = {r["request_id"] for r in store.iter_records() if r["decision"] != "attempt"}
    finally:
        store.dispose()
    answered = [rid for rid, status in seen if 200 <= status < 300]
    assert len(answered) > KILLS * 5, "the load produced too few answers to mean anything"
    assert all(rid in outcomes for rid in answered)
