"""Per-request CPU of `GET /v1/whoami` with no sockets: the ASGI app called in-process.

The secure app (`create_app`, default settings but no scrubber or HE workers, whoami needs
neither; logs as `serve` writes them) and the bare route of `benchmarks/bare_app.py`, each
driven by ``--clients`` concurrent callers on one uvloop. Without uvicorn and wrk on the same
cores the figures move less between runs than `bench_path.py`'s, and the split says where a
request's time goes:

* ``loop_us``: CPU of the event loop's thread per request (routing, the gate, the record);
* ``process_us``: the whole process per request (the audit writer's thread and the kernel's
  fsyncs on top);
* the audit writer's batches (records per commit, commit time).

``--profile FILE`` writes py-spy's raw samples (``py-spy record --format raw``) of the secure
run and prints each part of a request's share of the samples (`PARTS`) and the functions
with the most samples of their own.

    python -m benchmarks.inprocess_path [--requests 20000] [--clients 16] [--profile out.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def _drive(
    app: Any, headers: list[tuple[bytes, bytes]], requests: int, clients: int
) -> dict[str, Any]:
    statuses: collections.Counter[int] = collections.Counter()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] += 1

    async def caller(count: int) -> None:
        for _ in range(count):
            await app(_scope("/v1/whoami", headers), receive, send)

    await caller(200)  # warm caches and the first-use paths
    statuses.clear()
    gc.collect()
    started, loop_cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    await asyncio.gather(*(caller(requests // clients) for _ in range(clients)))
    done = sum(statuses.values())
    return {
        "requests_per_s": round(done / (time.perf_counter() - started)),
        "loop_us": round((time.thread_time() - loop_cpu) / done * 1e6, 1),
        "process_us": round((time.process_time() - process_cpu) / done * 1e6, 1),
        "statuses": dict(statuses),
    }


def _child_cpu_s(pid: int | None) -> float:
    """CPU seconds the audit writer's process has used (0 without one)."""
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _secure(requests: int, clients: int, writer: str) -> dict[str, Any]:
    from secure_aiaas.api.app import create_app
    from secure_aiaas.audit.writer import AuditWriter
    from secure_aiaas.logging import configure_logging
    from tests.conftest import STANDARD_KEYS, STANDARD_TENANTS
    from tests.support.inprocess import make_settings, provision_settings

    tmp = Path(tempfile.mkdtemp(prefix="saiaas-inprocess-"))
    settings = make_settings(
        tmp, privacy={"enabled": False}, he={"enabled": False}, audit={"writer": writer}
    )
    keys = provision_settings(settings, STANDARD_TENANTS, STANDARD_KEYS)
    configure_logging(settings.log.level, json_logs=settings.log.json_logs)
    batches: list[tuple[int, float]] = []
    committed = AuditWriter._committed

    def observed(self: AuditWriter, started: float, seqs: list[int], futures: list[Any]) -> None:
        batches.append((len(seqs), (time.perf_counter() - started) * 1000))
        committed(self, started, seqs, futures)

    AuditWriter._committed = observed  # type: ignore[method-assign]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        gc.freeze()  # as `serve` does once started
        headers = [(b"authorization", f"Bearer {keys['alice']}".encode()), (b"host", b"bench")]
        batches.clear()
        pid = getattr(app.state.pipeline.audit, "pid", None)
        child_cpu = _child_cpu_s(pid)
        result = await _drive(app, headers, requests, clients)
        child_us = (_child_cpu_s(pid) - child_cpu) / max(1, sum(result["statuses"].values())) * 1e6
    sizes = [n for n, _ in batches]
    return {
        **result,
        "writer": writer,
        "writer_process_us": round(child_us, 1),
        "audit_batches": len(batches),
        "records_per_commit": round(statistics.mean(sizes), 1) if sizes else 0,
        "commit_ms_p50": round(statistics.median(ms for _, ms in batches), 2) if batches else 0,
    }


async def _bare(requests: int, clients: int) -> dict[str, Any]:
    from benchmarks.bare_app import app

    return await _drive(app, [(b"host", b"bench")], requests, clients)


# Where a request's samples go: each part's inclusive share (the frame and what it calls).
PARTS = {
    "FastAPI: dependency solving (incl. our gate)": "solve_dependencies (",
    "our gate: policy decision + quota admission": "_gate (",
    "FastAPI: response model (validate + serialise)": "serialize_response (",
    "FastAPI: route matching": "APIRouter.matches (",
    "FastAPI: native telemetry check": "NativeTelemetry.enabled (",
    "the request log line (structlog)": "make_method.<locals>.meth (",
    "the audit record: building the event": "_Exchange._event (",
    "the audit record: handing it to the writer": "AuditWriter.append (",
    "authentication (key digest, principal cache)": "Pipeline.authenticate (",
    "request metrics (Prometheus)": "Metrics.observe_request (",
}


def _parts(raw: Path) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Each part's inclusive share of the request-handling samples (frames under the
    driver), and the functions with the most samples of their own."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        if not any("_drive" in f for f in frames):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for part, prefix in PARTS.items():
            if any(prefix in f for f in frames):
                inclusive[part] += int(count)
    shares = {part: inclusive[part] / total for part in PARTS}
    return shares, [(f, c / total) for f, c in own.most_common(15)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw samples here")
    parser.add_argument("--side", choices=["both", "secure", "bare"], default="both")
    parser.add_argument(
        "--writer",
        choices=["process", "thread", "both"],
        default="process",
        help="where the audit writer runs (both: one run of each, alternated)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        command = [
            sys.executable, "-m", "benchmarks.inprocess_path", "--side", "secure",
            "--requests", str(args.requests), "--clients", str(args.clients),
            "--writer", "thread" if args.writer == "thread" else "process",
        ]  # fmt: skip
        spy_args = ["record", "--format", "raw", "--rate", "500", "-o", str(args.profile)]
        subprocess.run(
            [str(spy), *spy_args, "--", *command],
            cwd=REPO,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        shares, own = _parts(args.profile)
        print("share of request samples, inclusive:")
        for part, share in shares.items():
            print(f"{share:6.1%}  {part}")
        print("most samples of their own:")
        for frame, share in own:
            print(f"{share:6.1%}  {frame}")
        return
    import uvloop

    out: dict[str, Any] = {}
    if args.side in ("both", "bare"):
        out["bare"] = uvloop.run(_bare(args.requests, args.clients))
    if args.side in ("both", "secure"):
        # The per-request log line goes where `serve` sends it: stderr (here: discarded).
        stderr = os.dup(2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        writers = ["thread", "process"] if args.writer == "both" else [args.writer]
        try:
            for writer in writers:
                name = "secure" if len(writers) == 1 else f"secure-{writer}"
                out[name] = uvloop.run(_secure(args.requests, args.clients, writer))
        finally:
            os.dup2(stderr, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
