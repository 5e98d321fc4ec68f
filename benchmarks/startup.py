"""Start-up, before/after, side by side in one run: seconds from `secure-aiaas serve` to a
ready `/v2/health/ready`, and the CPU seconds its processes spent getting there, for an
earlier commit and the working tree (default settings: scrubber and HE workers, SQLite
audit, no models), beside a bare FastAPI app under uvicorn.

    python -m benchmarks.startup --baseline 18ca274 [--rounds 5]

Sides alternate, so a busy moment hits both. Every start and every restart after a crash
pays this, and so does each server a test starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent


def _env(tree: Path, work: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAIAAS_")}
    env.update(
        {
            "SAIAAS_DATA_DIR": str(work / "data"),
            "SAIAAS_KEYS_DIR": str(work / "keys"),
            "SAIAAS_POLICY_DIR": str(tree / "policies"),
            "SAIAAS_MODELS_DIR": str(work / "no-models"),
            "SAIAAS_LOG__LEVEL": "WARNING",
            # The PII graph converted once for both sides (each start then reads it).
            "SAIAAS_PRIVACY__CACHE_DIR": str(cache),
            "PYTHONPATH": str(tree),
        }
    )
    return env


def _tree_cpu_and_rss(pid: int) -> tuple[float, int, int]:
    """CPU seconds of a process and its descendants; the RSS of it and of them all."""
    root = psutil.Process(pid)
    cpu, total_rss = 0.0, 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
            total_rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return cpu, root.memory_info().rss, total_rss


def _start(command: list[str], cwd: Path, env: dict[str, str], ready: str) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            assert proc.poll() is None, f"{command} exited with {proc.returncode}"
            assert time.monotonic() - started < 120, f"{command} did not become ready"
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        seconds = time.monotonic() - started
        cpu, rss, total_rss = _tree_cpu_and_rss(proc.pid)
        return {
            "ready_s": round(seconds, 2),
            "cpu_s": round(cpu, 2),
            "main_rss_mb": rss >> 20,
            "all_rss_mb": total_rss >> 20,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _secure(tree: Path, work: Path, cache: Path) -> dict[str, Any]:
    env = _env(tree, work, cache)
    subprocess.run(
        [sys.executable, "-m", "secure_aiaas.cli", "keys", "init"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    command = [sys.executable, "-m", "secure_aiaas.cli", "serve", "--port", str(port)]
    return _start(command, tree, env, f"http://127.0.0.1:{port}/v2/health/ready")


def _bare() -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.bare_app:app", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return _start(command, REPO, env, f"http://127.0.0.1:{port}/v1/whoami")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "startup.json"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="saiaas-startup-"))
    base_tree = tmp / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base_tree), args.baseline],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        cache = tmp / "cache"
        _secure(REPO, tmp / "warm", cache)  # converts the PII graph once, for both sides
        for round_ in range(args.rounds):
            for side, run in (
                ("baseline", lambda r=round_: _secure(base_tree, tmp / f"b{r}", cache)),
                ("current", lambda r=round_: _secure(REPO, tmp / f"c{r}", cache)),
                ("bare", _bare),
            ):
                row = {"side": side, "round": round_, **run()}
                rows.append(row)
                print(row, flush=True)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base_tree)],
            cwd=REPO,
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        side: {
            key: statistics.median(r[key] for r in rows if r["side"] == side)
            for key in ("ready_s", "cpu_s", "main_rss_mb", "all_rss_mb")
        }
        for side in ("baseline", "current", "bare")
    }
    result = {"baseline": args.baseline, "rows": rows, "median": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
