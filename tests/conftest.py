"""Fixtures shared by every test directory: keys, policy copies, stores, a real server.

PostgreSQL and Redis are real services at 127.0.0.1. In CI (CI=true) a test that needs one
fails when it is absent; locally it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("SAIAAS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SAIAAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# `make test` runs two processes (pytest-xdist). Each takes a whole file at a time, so a
# module's server starts once; the Ray tests are one unit (one Ray cluster at a time on this
# machine). The longest units go first, so neither process is left with one at the end.
RAY_TESTS = "tests/scaleout/"
LONGEST_FIRST = (
    RAY_TESTS,
    "tests/reliability/test_faults.py",
    "tests/security/test_fuzz_api.py",
    "tests/security/test_crash.py",
    "tests/compliance/test_report_scale.py",
)


def _unit_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return RAY_TESTS if path.startswith(RAY_TESTS) else path


def _rank(nodeid: str) -> int:
    unit = _unit_of(nodeid)
    return LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)


def _own_node_id(item: pytest.Item) -> None:
    """Schemathesis (4.32) builds one item per API operation, but pytest 9 derives an item's
    node id from its function's name and parametrization only, so all of them share one.
    pytest-xdist schedules and reports by node id: all but one would silently not run. Each
    gets its operation's label as its parameter, as `pytest.mark.parametrize` would give."""
    label = getattr(item, "operation_label", None)
    originalname = getattr(item, "originalname", None)
    if label is None or originalname is None or item.parent is None:
        return
    item._id = item.parent.id.child(originalname).with_params(label)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        _own_node_id(item)
    # Tests that still share a node id cannot be distributed: refuse instead of dropping them.
    if hasattr(config, "workerinput"):  # this process is a pytest-xdist worker
        shared = [nodeid for nodeid, n in Counter(i.nodeid for i in items).items() if n > 1]
        if shared:
            raise pytest.UsageError(f"tests share node ids, run them without -n: {shared}")
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: file order otherwise


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class OneUnitAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of(nodeid)

    return OneUnitAtATime(config, log)  # type: ignore[arg-type]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} at {host}:{port} is required in CI but not reachable")
    pytest.skip(f"{name} not reachable at {host}:{port} (runs in CI)")


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    from secure_aiaas.crypto import init_keys

    path = tmp_path / "keys"
    init_keys(path)
    return path


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policies/, so a test may edit it."""
    path = tmp_path / "policies"
    shutil.copytree(REPO / "policies", path)
    return path


@contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_schema() as url:
        yield url


def api_routes(app: object) -> list[object]:
    """Every route the app serves, flattened through included routers."""
    from fastapi import routing

    flatten = getattr(routing, "iter_route_contexts", None)
    routes = app.routes  # type: ignore[attr-defined]
    if flatten is None:
        return list(routes)
    return [ctx.original_route for ctx in flatten(routes)]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An audit store URL on each backend (the PostgreSQL one in its own schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    """A fresh audit store with its schema, on each backend."""
    from secure_aiaas.audit import SqlAuditStore

    audit_store = SqlAuditStore(store_url)
    audit_store.create_schema()
    yield audit_store
    audit_store.dispose()


@pytest.fixture
def keys(keys_dir: Path):  # type: ignore[no-untyped-def]
    """The server keys in `keys_dir`."""
    from secure_aiaas.crypto import load_keys

    return load_keys(keys_dir)


# Ports for the servers tests start: below the kernel's ephemeral range (32768-60999 here,
# where every outgoing connection takes its local port, and where binding port 0 picks
# from) and above Ray's worker ports (10002-19999). A port picked from the ephemeral range
# was taken by a connection in the seconds before the server bound it (seen at three test
# processes beside a Ray cluster).
_TEST_PORTS = range(20000, 32768)
_pick = random.Random()  # its own: a test that seeds the global generator changes nothing here


def free_port() -> int:
    for _ in range(200):
        port = _pick.choice(_TEST_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: another
            return port
    raise RuntimeError("no free port for a test server")


@dataclass
class Server:
    """A real `secure-aiaas serve` process on a loopback port."""

    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    keys_dir: Path
    policy_dir: Path
    api_keys: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_keys[who]}"} if who else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_aiaas.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


SHARED_CACHE = Path(tempfile.gettempdir()) / f"saiaas-test-cache-{os.getuid()}"


def service_env(
    tmp_path: Path,
    keys_dir: Path,
    policy_dir: Path,
    audit_url: str | None = None,
    database_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAIAAS_")}
    env.update(
        {
            "SAIAAS_DATA_DIR": str(tmp_path / "data"),
            "SAIAAS_KEYS_DIR": str(keys_dir),
            "SAIAAS_POLICY_DIR": str(policy_dir),
            "SAIAAS_LOG__LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # Tests call routes anonymously on purpose; the flood tests set these low again.
            "SAIAAS_SCHEDULING__ANONYMOUS_PER_ADDRESS_PER_MINUTE": "1000000",
            "SAIAAS_SCHEDULING__ANONYMOUS_AUDIT_BYTES_PER_S": str(64 << 20),
            # One converted PII graph for every server of the run (and the next runs): it
            # is keyed and checked, and converting it again costs ~2.5 s per server start.
            "SAIAAS_PRIVACY__CACHE_DIR": str(SHARED_CACHE),
            # One detection worker and one HE worker (the defaults: one per core) unless a
            # test asks for more: each costs ~0.5 s of CPU per start, and a test's server
            # shares the two cores with the other test processes.
            "SAIAAS_PRIVACY__PROCESSES": "1",
            "SAIAAS_HE__WORKERS": "1",
        }
    )
    if audit_url:
        env["SAIAAS_AUDIT_URL"] = audit_url
    if database_url:
        env["SAIAAS_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def start_server(
    env: dict[str, str], log_path: Path, *, wait: bool = True, workers: int = 1
) -> Server:
    """`secure-aiaas serve` on a free port (``workers`` uvicorn worker processes), logging to
    ``log_path``; with ``wait``, returned once ready."""
    port = free_port()
    log = log_path.open("wb")
    many = ["--workers", str(workers)] if workers > 1 else []
    process = subprocess.Popen(
        [sys.executable, "-m", "secure_aiaas.cli", "serve", "--port", str(port), *many],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    server = Server(
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        process=process,
        log_path=log_path,
        data_dir=Path(env["SAIAAS_DATA_DIR"]),
        keys_dir=Path(env["SAIAAS_KEYS_DIR"]),
        policy_dir=Path(env["SAIAAS_POLICY_DIR"]),
    )
    if wait:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.logs()}")
            try:
                if httpx.get(server.base_url + "/v2/health/ready", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        stop_server(server)
        raise RuntimeError("server did not become ready:\n" + server.logs())
    return server


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def provision(
    env: dict[str, str],
    tenants: dict[str, str],
    keys: dict[str, tuple[str, str, str]],
    operators: frozenset[str] | set[str] | None = None,
) -> dict[str, str]:
    """Create tenants and API keys through the real registry; returns name → API key.

    Tenants named in ``operators`` (default: `OPERATOR_TENANTS`) are operator tenants: only
    their keys may hold global roles (security-admin, metrics-reader).
    """
    operators = OPERATOR_TENANTS if operators is None else operators
    from secure_aiaas.auth import Registry
    from secure_aiaas.config import Settings
    from secure_aiaas.crypto import load_keys

    settings = Settings(
        data_dir=Path(env["SAIAAS_DATA_DIR"]),
        keys_dir=Path(env["SAIAAS_KEYS_DIR"]),
        database_url=env.get("SAIAAS_DATABASE_URL"),
    )
    registry = Registry(
        settings.resolved_database_url(), load_keys(settings.keys_dir).apikey_hmac_key
    )
    registry.create_schema()
    existing = {t.name for t in registry.list_tenants()}
    for name, trust in tenants.items():
        if name not in existing:
            registry.create_tenant(name, trust, operator=name in operators)
    result = {}
    for label, (tenant, subject, role) in keys.items():
        api_key, _ = registry.create_api_key(tenant, subject, role)
        result[label] = api_key
    registry.dispose()
    return result


STANDARD_TENANTS = {"acme": "trusted", "medco": "sensitive", "platform": "trusted"}
# The operator tenant: where security admins and metrics scrapers hold their keys.
OPERATOR_TENANTS = frozenset({"platform"})
STANDARD_KEYS = {
    "alice": ("acme", "alice", "user"),
    "acme-admin": ("acme", "carol", "tenant-admin"),
    "acme-auditor": ("acme", "dave", "auditor"),
    "medco-user": ("medco", "erin", "user"),
    "medco-he": ("medco", "frank", "he-user"),
    "secadmin": ("platform", "sam", "security-admin"),
}


@pytest.fixture
def server_env(tmp_path: Path, keys_dir: Path, policy_dir: Path) -> dict[str, str]:
    return service_env(tmp_path, keys_dir, policy_dir)


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    api_keys = provision(server_env, STANDARD_TENANTS, STANDARD_KEYS)
    srv = start_server(server_env, tmp_path / "server.log")
    srv.api_keys = api_keys
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One standard server (no models) per test process, for the tests of any module that
    read only what every such server has (the standard tenants, keys and shipped policies)
    or make what is theirs alone (`own_key`): a start costs ~7 s of CPU, shared by the
    other test processes. A test that revokes a standard key, edits the policies, stops the
    server or tampers with its stores takes `server`, its own."""
    tmp = tmp_path_factory.mktemp("shared-server")
    srv = private_server(tmp)
    try:
        yield srv
    finally:
        stop_server(srv)


def private_server(
    tmp: Path,
    keys: dict[str, tuple[str, str, str]] = STANDARD_KEYS,
    *,
    tenants: dict[str, str] = STANDARD_TENANTS,
    workers: int = 1,
    audit_url: str | None = None,
    database_url: str | None = None,
    **extra: str,
) -> Server:
    """A started server of its own under ``tmp``: its own server keys, a copy of the shipped
    policies, ``tenants`` with ``keys``, ``workers`` worker processes and ``extra`` settings
    (`service_env`). The caller stops it (`stop_server`)."""
    from secure_aiaas.crypto import init_keys

    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    env = service_env(tmp, tmp / "keys", tmp / "policies", audit_url, database_url, **extra)
    api_keys = provision(env, tenants, keys)
    srv = start_server(env, tmp / "server.log", workers=workers)
    srv.api_keys = api_keys
    return srv


def own_key(server: Server, tenant: str, role: str) -> tuple[str, str]:
    """A key of a subject of its own in ``tenant`` (created in the server's registry, as
    `secure-aiaas apikey create` does): ``(api_key, subject)``."""
    subject = "own-" + uuid.uuid4().hex[:8]
    api_key = provision(server.env, {}, {subject: (tenant, subject, role)})[subject]
    return api_key, subject


def key_id_of(server: Server, subject: str) -> str:
    """The key id of ``subject``'s API key in ``server``'s registry (`apikey list`)."""
    listed = json.loads(server.cli("apikey", "list", "--json").stdout)["api_keys"]
    return str(next(k["key_id"] for k in listed if k["subject"] == subject))


@pytest.fixture(scope="session")
def trained_models_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The three built-in models, trained once per run (read-only for servers): the first
    test process to need them trains them (~6 s), the others wait for it and read them."""
    import fcntl

    from secure_aiaas.training import BUILTIN_MODELS, train

    run_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # pytest-xdist: the run's directory holds each worker's own
        run_dir = run_dir.parent
    data_dir = run_dir / "trained-models"
    with (run_dir / "trained-models.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = run_dir / "trained-models.done"
        if not done.exists():
            for name in BUILTIN_MODELS:
                train(name, data_dir, version="1", progress=False)
            done.touch()
    return data_dir


@pytest.fixture(scope="module")
def model_server(
    tmp_path_factory: pytest.TempPathFactory, trained_models_dir: Path
) -> Iterator[Server]:
    """A real server with the built-in models loaded (one per test module)."""
    tmp = tmp_path_factory.mktemp("model-server")
    srv = private_server(tmp, SAIAAS_MODELS_DIR=str(trained_models_dir))
    try:
        yield srv
    finally:
        stop_server(srv)
