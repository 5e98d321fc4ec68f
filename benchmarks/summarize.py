"""Render benchmarks/results/bench_{spine,serving}.jsonl as the markdown tables in
docs/benchmarks.md (the latest row per configuration wins)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _rows(name: str) -> list[dict[str, object]]:
    path = RESULTS / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def spine() -> str:
    latest = {str(r["test"]): r for r in _rows("bench_spine")}
    out = ["| measurement | bare FastAPI | secure spine | ratio |", "|---|---|---|---|"]
    bare, ours = latest.get("test_bare_fastapi_route"), latest.get("test_secure_spine_route")
    if bare and ours:
        b, o = float(bare["median_ms"]), float(ours["median_ms"])  # type: ignore[arg-type]
        out.append(
            f"| one client, median latency | {b:.2f} ms | {o:.2f} ms | "
            f"+{o - b:.2f} ms per request ({o / b:.1f}×) |"
        )
    cb = latest.get("test_concurrent_16_clients[bare]")
    cs = latest.get("test_concurrent_16_clients[spine]")
    if cb and cs:
        out.append(
            f"| 16 clients, requests/s | {cb['requests_per_s']} | {cs['requests_per_s']} | "
            f"{float(cs['requests_per_s']) / float(cb['requests_per_s']):.0%} |"
        )  # type: ignore[arg-type]
        out.append(
            f"| 16 clients, p50 / p99 | {cb['p50_ms']} / {cb['p99_ms']} ms | "
            f"{cs['p50_ms']} / {cs['p99_ms']} ms | |"
        )
    out += [
        "",
        "| store | one commit per record | group commit (AuditWriter) | ratio |",
        "|---|---|---|---|",
    ]
    for backend in ("sqlite", "postgresql"):
        per = next(
            (
                r
                for r in reversed(_rows("bench_spine"))
                if r.get("backend") == backend and r.get("mode") == "commit-per-record"
            ),
            None,
        )
        grp = next(
            (
                r
                for r in reversed(_rows("bench_spine"))
                if r.get("backend") == backend and r.get("mode") == "group-commit"
            ),
            None,
        )
        if per and grp:
            out.append(
                f"| {backend}, 8 writers, durable | {per['appends_per_s']} appends/s | "
                f"{grp['appends_per_s']} appends/s | "
                f"{float(grp['appends_per_s']) / float(per['appends_per_s']):.1f}× |"
            )  # type: ignore[arg-type]
    return "\n".join(out)


def serving() -> str:
    rows = {(r["target"], r["model"], r["clients"]): r for r in _rows("bench_serving")}
    out = [
        "| model | clients | bare FastAPI + torch | secure, batching | secure, no batching |"
        " secure/bare |",
        "|---|---|---|---|---|---|",
    ]
    for model in ("digits-mlp", "text-embed"):
        for clients in (1, 8, 64):
            cells = []
            for target in ("bare", "secure-batching", "secure-no-batching"):
                r = rows.get((target, model, clients))
                cells.append(
                    "–"
                    if r is None
                    else f"{r['requests_per_s']} req/s ({r['p50_ms']} / {r['p99_ms']} ms)"
                )
            b, s = rows.get(("bare", model, clients)), rows.get(("secure-batching", model, clients))
            ratio = (
                f"{float(s['requests_per_s']) / float(b['requests_per_s']):.0%}"  # type: ignore[arg-type]
                if b and s
                else "–"
            )
            out.append(f"| {model} | {clients} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(out)


if __name__ == "__main__":
    print("## Spine\n\n" + spine() + "\n\n## Serving\n\n" + serving())
