"""Before/after, side by side in one run: the secure spine of an earlier commit against the
working tree — `GET /v1/whoami` under wrk at 1/16/64 clients, durable audit appends/s with
8 writers (group commit), and what a write-ahead attempt record costs a request.

    python -m benchmarks.compare_spine --baseline 064a592 [--current REF] [--seconds 8]

Each side runs its own code (a temporary git worktree per commit; the working tree when
``--current`` is not given) with its own default settings, on the same machine,
alternating, so a busy moment hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.loadgen import WRK, wrk
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent

_APPENDS = r"""
import asyncio, json, sys, threading, time, uuid
from pathlib import Path
from secure_aiaas.audit import AuditWriter, SqlAuditStore, utc_now
from secure_aiaas.crypto import init_keys, load_keys
from secure_aiaas.types import AuditEvent

url, keys_dir, per_writer, pairs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
init_keys(keys_dir)
store = SqlAuditStore(url, timeout_s=30)
store.create_schema()
writer = AuditWriter(store, load_keys(keys_dir), timeout_s=30)
writer.start()

def event(decision):
    return AuditEvent(ts=utc_now(), request_id=uuid.uuid4().hex, method="GET",
                      route="/v1/whoami", status=200 if decision != "attempt" else 0,
                      decision=decision, latency_ms=1.0, tenant="acme", subject="alice",
                      key_id="k_1", role="user", action="read", object="identity",
                      rule="*, *, identity, read, allow", policy_version="v1", details={})

async def request():
    if pairs == "1":
        await writer.append(event("attempt"))
    await writer.append(event("allow"))

async def main():
    async def one_writer():
        for _ in range(per_writer):
            await request()
    started = time.perf_counter()
    await asyncio.gather(*(one_writer() for _ in range(int(sys.argv[5]))))
    return time.perf_counter() - started

elapsed = asyncio.run(main())
writer.close()
print(json.dumps({"requests_per_s": int(sys.argv[5]) * per_writer / elapsed}))
"""


def _cli(tree: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "secure_aiaas.cli", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def _env(tree: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAIAAS_")}
    env.update(
        {
            "SAIAAS_DATA_DIR": str(work / "data"),
            "SAIAAS_KEYS_DIR": str(work / "keys"),
            "SAIAAS_POLICY_DIR": str(tree / "policies"),
            "SAIAAS_LOG__LEVEL": "WARNING",
            "SAIAAS_MODELS_DIR": str(work / "no-models"),
            "PYTHONPATH": str(tree),
        }
    )
    return env


class Side:
    """One version of the service: its code, its data, a running server."""

    def __init__(self, name: str, tree: Path, work: Path, profile_to: Path | None = None) -> None:
        self.name, self.tree, self.work = name, tree, work
        self.env = _env(tree, work)
        _cli(tree, self.env, "keys", "init")
        _cli(tree, self.env, "tenant", "create", "acme")
        made = _cli(
            tree,
            self.env,
            "apikey",
            "create",
            "--tenant",
            "acme",
            "--subject",
            "alice",
            "--role",
            "user",
            "--json",
        )
        self.key = json.loads(made)["api_key"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Under pyinstrument (a statistical profiler of the main thread, where the event
        # loop runs) when a profile is asked for: it writes its report when interrupted.
        profiler = ["-m", "pyinstrument", "-r", "json", "-o", str(profile_to)] if profile_to else []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *profiler,
                "-m",
                "secure_aiaas.cli",
                "serve",
                "--port",
                str(self.port),
            ],
            cwd=tree,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(self.url + "/v1/whoami", headers=self.headers, timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} server did not start")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _appends(tree: Path, url: str, work: Path, pairs: bool, writers: int) -> float:
    env = _env(tree, work)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _APPENDS,
            url,
            str(work / "keys-a"),
            "200",
            "1" if pairs else "0",
            str(writers),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["requests_per_s"])


def _flat(report: Path, top: int) -> list[dict[str, Any]]:
    """pyinstrument's call tree of request handling as a flat list: each function's own
    time (not in a callee) and its inclusive time (once per call path), as shares of the
    handling time not spent awaiting, largest own time first."""
    root = json.loads(report.read_text())["root_frame"]
    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}

    def walk(node: dict[str, Any], above: frozenset[str]) -> None:
        name = f"{node['function']} ({node.get('file_path_short', '')})"
        children = node.get("children", [])
        own[name] = own.get(name, 0.0) + node["time"] - sum(c["time"] for c in children)
        if name not in above:
            inclusive[name] = inclusive.get(name, 0.0) + node["time"]
        for child in children:
            walk(child, above | {name})

    # Only request handling (uvicorn's run_asgi subtrees): not the start-up imports, not
    # the lifespan, not the writer thread.
    def requests(node: dict[str, Any]) -> list[dict[str, Any]]:
        if node["function"] == "run_asgi":
            return [node]
        return [r for c in node.get("children", []) for r in requests(c)]

    for handling in requests(root):
        walk(handling, frozenset())
    # Waiting is not work: the time a coroutine spends awaiting.
    waits = ("[await]", "<await>", "[out-of-context]", "[self]")
    idle = sum(t for n, t in own.items() if n.startswith(waits))
    busy = max(1e-9, sum(own.values()) - idle)
    ranked = sorted((n for n in own if not n.startswith(waits)), key=lambda n: -own[n])
    return [
        {"function": n, "own": round(own[n] / busy, 3), "inclusive": round(inclusive[n] / busy, 3)}
        for n in ranked[:top]
    ]


def _profile(
    name: str, tree: Path, work: Path, seconds: int, top: int = 20
) -> list[dict[str, Any]]:
    """The side's server under pyinstrument, 16 wrk clients for ``seconds``."""
    report = work.parent / f"profile-{name}.json"
    side = Side(name, tree, work, profile_to=report)
    try:
        wrk(side.url, "/v1/whoami", headers=side.headers, body=None, clients=16,
            seconds=seconds, workdir=work.parent)  # fmt: skip
    finally:
        side.proc.send_signal(signal.SIGINT)
        side.proc.wait(60)
    return _flat(report, top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="064a592")
    parser.add_argument("--current", default=None, help="a commit (default: working tree)")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--profile-seconds", type=int, default=10, help="0: no profile")
    parser.add_argument("--only-profile", action="store_true", help="skip the timed runs")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "compare_spine.json"
    )
    args = parser.parse_args()
    assert WRK is not None, "wrk is needed (apt-get install wrk)"
    tmp = Path(tempfile.mkdtemp(prefix="saiaas-compare-"))
    base_tree = tmp / "baseline"
    trees = [base_tree]
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base_tree), args.baseline],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    current_tree = REPO
    if args.current:
        current_tree = tmp / "current"
        trees.append(current_tree)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(current_tree), args.current],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    results: dict[str, Any] = {
        "baseline": args.baseline,
        "current": args.current or "HEAD+",
        "whoami": [],
        "appends": [],
    }
    sides: list[Side] = []
    try:
        sides = [Side("baseline", base_tree, tmp / "b"), Side("current", current_tree, tmp / "c")]
        for _ in range(0 if args.only_profile else args.rounds):
            for clients in (1, 16, 64):
                for side in sides:
                    figures = wrk(
                        side.url,
                        "/v1/whoami",
                        headers=side.headers,
                        body=None,
                        clients=clients,
                        seconds=args.seconds,
                        workdir=tmp,
                    )
                    results["whoami"].append({"side": side.name, "clients": clients, **figures})
                    print(side.name, clients, figures, flush=True)
        for side in sides:
            side.stop()
        sides = []
        for backend, url_of in (
            ()
            if args.only_profile
            else (
                ("sqlite", lambda w: f"sqlite:///{w / 'bench-audit.db'}"),
                ("postgresql", None),
            )
        ):
            for name, tree in (("baseline", base_tree), ("current", current_tree)):
                for pairs in (False, True) if name == "current" else (False,):
                    work = tmp / f"a-{backend}-{name}-{pairs}"
                    work.mkdir()
                    url = url_of(work) if url_of else _pg_schema(args.pg)
                    rate = _appends(tree, url, work, pairs, writers=8)
                    row = {
                        "backend": backend,
                        "side": name,
                        "write_ahead": pairs,
                        "writers": 8,
                        "requests_per_s": round(rate, 1),
                    }
                    results["appends"].append(row)
                    print(row, flush=True)
        if args.profile_seconds:
            results["profile"] = {
                name: _profile(name, tree, tmp / f"p-{name}", args.profile_seconds)
                for name, tree in (("baseline", base_tree), ("current", current_tree))
            }
            for name, rows in results["profile"].items():
                print(f"--- {name}", *rows, sep="\n", flush=True)
    finally:
        for side in sides:
            side.stop()
        for tree in trees:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True
            )
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def _pg_schema(admin_url: str) -> str:
    import uuid

    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{admin_url}?options=-csearch_path%3D{schema}"


if __name__ == "__main__":
    main()
