"""Load generation for the HTTP benchmarks: wrk (C, epoll) when installed, so the client's
own cost stays small next to the server's; the caller falls back to a Python client."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

WRK = shutil.which("wrk")

_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""


def wrk(
    url: str,
    path: str,
    *,
    headers: dict[str, str],
    body: object | None,
    clients: int,
    seconds: int,
    workdir: Path,
) -> dict[str, float]:
    """Closed-loop load for ``seconds``; requests/s and p50/p99 latency (ms).

    Raises:
        AssertionError: a non-2xx answer (a benchmark of errors measures nothing).
    """
    assert WRK is not None
    script = workdir / "wrk.lua"
    request = (
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{json.dumps(body)}]]\n"
        if body is not None
        else ""
    )
    script.write_text(request + _REPORT)
    args = [
        WRK,
        "-t",
        "2" if clients > 1 else "1",
        "-c",
        str(clients),
        "-d",
        f"{seconds}s",
        "-s",
        str(script),
        "--timeout",
        "30s",
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url + path], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    requests, duration_us, p50_us, p99_us, bad_status = map(int, line.split()[1:])
    assert bad_status == 0, out
    return {
        "requests_per_s": round(requests / (duration_us / 1e6), 1),
        "p50_ms": round(p50_us / 1000, 2),
        "p99_ms": round(p99_us / 1000, 2),
        "requests": requests,
        "client": "wrk",
    }
