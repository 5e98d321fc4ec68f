"""Memory of the scrubbing service with its models loaded: main process + worker processes.

Run as a script (a fresh process, so nothing else is loaded in it)::

    .venv/bin/python -m benchmarks.privacy_resources --processes 2

prints one JSON line: RSS and PSS (proportional set size: shared pages counted once across the
processes) of the main process, each worker and their sum, after a warm-up batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

POLICY = Path(__file__).resolve().parents[1] / "policies" / "privacy.yaml"


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and Pss of one process, in KiB (from /proc)."""
    out = {"rss_kib": 0, "pss_kib": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_kib"] = int(line.split()[1])
    except OSError:
        pass
    return out


def total(pids: Sequence[int]) -> dict[str, object]:
    """Per-process and summed memory of ``pids``."""
    each = {pid: memory_kib(pid) for pid in pids}
    return {
        "processes": len(pids),
        "rss_mib": round(sum(m["rss_kib"] for m in each.values()) / 1024, 1),
        "pss_mib": round(sum(m["pss_kib"] for m in each.values()) / 1024, 1),
        "per_process_rss_mib": [round(m["rss_kib"] / 1024, 1) for m in each.values()],
    }


async def _measure(processes: int, pii_model: str | None) -> dict[str, object]:
    from secure_aiaas.privacy import ScrubberService, load_policy
    from secure_aiaas.privacy.evaluation.generated_v1 import generate

    service = await ScrubberService.start(
        load_policy(POLICY), processes=processes, pii_model=pii_model
    )
    try:
        texts = [s.text for s in generate("tune", 200, 50)]
        await asyncio.gather(
            *(service.scrub_texts(texts[i : i + 10], tenant="m") for i in range(0, len(texts), 10))
        )
        figures = total([os.getpid(), *service.worker_pids])
        figures["pii_model"] = pii_model or "none (fast tier only)"
        return figures
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-pii-model", action="store_true")
    args = parser.parse_args()
    pii = None if args.no_pii_model else "int8"
    print(json.dumps(asyncio.run(_measure(args.processes, pii))))


if __name__ == "__main__":
    main()
