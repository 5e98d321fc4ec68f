"""Compliance report: an HTML page (charts by matplotlib) computed from a verified export.

It reads only the export directory, so the figures can be recomputed by anyone holding the
export; the page names the manifest's SHA-256 it was computed from. Memory is bounded by the
number of distinct routes, rules, models and subjects, plus one float per record (latency).
"""

from __future__ import annotations

import base64
import html
import io
import json
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INFER_ACTIONS = ("infer",)


class _Stats:
    def __init__(self) -> None:
        self.records = 0
        self.purged = 0
        self.decisions: Counter[str] = Counter()
        self.routes: Counter[tuple[str, str]] = Counter()
        self.deny_rules: Counter[str] = Counter()
        self.deny_who: Counter[tuple[str, str, str]] = Counter()
        self.pii: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()
        self.models: Counter[tuple[str, str]] = Counter()
        self.days: Counter[str] = Counter()
        self.latency = array("d")
        self.route_latency: dict[str, array[float]] = {}
        self.first_ts: str | None = None
        self.last_ts: str | None = None

    def add(self, rec: dict[str, Any]) -> None:
        self.records += 1
        ts = str(rec["ts"])
        self.first_ts = self.first_ts or ts
        self.last_ts = ts
        self.days[ts[:10]] += 1
        decision = str(rec["decision"])
        route = str(rec["route"])
        self.decisions[decision] += 1
        self.routes[(route, decision)] += 1
        if decision == "deny":
            self.deny_rules[str(rec["rule"] or "default-deny")] += 1
            self.deny_who[
                (
                    str(rec.get("subject")),
                    str(rec.get("object")),
                    str(rec["rule"] or "default-deny"),
                )
            ] += 1
        details = json.loads(rec["details"] or "{}")
        pii = details.get("pii")
        if isinstance(pii, dict):
            for kind, n in pii.items():
                if isinstance(n, int) and n > 0:
                    self.pii[str(kind)] += n
        obj = str(rec.get("object") or "")
        if decision != "allow":
            pass  # a refused request used no model, encrypted or not
        elif "he" in details or obj.startswith(("he-model:", "he-context:")):
            self.modes["encrypted (HE)"] += 1
        elif rec.get("model") or obj.startswith("model:"):
            self.modes["plaintext"] += 1
        if rec.get("model"):
            self.models[(str(rec["model"]), str(rec.get("subject")))] += 1
        latency = float(rec["latency_ms"] or 0.0)
        self.latency.append(latency)
        self.route_latency.setdefault(route, array("d")).append(latency)


def _percentile(values: array[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def collect(export_dir: Path) -> tuple[dict[str, Any], _Stats]:
    manifest = json.loads((export_dir / "manifest.json").read_text())
    stats = _Stats()
    with (export_dir / manifest["records_file"]).open("rb") as fh:
        for line in fh:
            entry = json.loads(line)
            if entry["record"] is None:
                stats.purged += 1
                continue
            stats.add(entry["record"])
    return manifest, stats


def _chart(
    kind: str,
    labels: list[str],
    values: list[int | float],
    title: str,
    xlabel: str = "",
    color: str = "#3465a4",
) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = max(2.4, 0.38 * len(labels) + 1.2) if kind == "barh" else 3.2
    fig, ax = plt.subplots(figsize=(7.5, height), dpi=110)
    if not labels:
        ax.text(0.5, 0.5, "no data in this range", ha="center", va="center")
        ax.set_axis_off()
    elif kind == "barh":
        short = [lab if len(lab) <= 48 else lab[:45] + "..." for lab in labels]
        bars = ax.barh(short[::-1], values[::-1], color=color)
        ax.bar_label(bars, padding=3, fontsize=8)
        ax.set_xlabel(xlabel)
    elif kind == "hist":
        ax.hist(values, bins=40, color=color)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("requests")
    else:
        ax.bar(labels, values, color=color)
        ax.set_ylabel(xlabel)
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_title(title, fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(headers: list[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = (
        "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        or f"<tr><td colspan={len(headers)}>none</td></tr>"
    )
    header = f"<tr>{head}</tr>" if any(headers) else ""
    return f"<table>{header}{body}</table>"


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def build_report(export_dir: Path, output: Path, *, manifest_sha256: str) -> dict[str, Any]:
    """Write the HTML report for the export in ``export_dir``; returns its headline figures."""
    manifest, s = collect(export_dir)
    deny_rules = s.deny_rules.most_common(15)
    routes = sorted(
        {r for r, _ in s.routes},
        key=lambda r: -sum(n for (rr, _), n in s.routes.items() if rr == r),
    )[:20]
    p50, p95, p99 = (_percentile(s.latency, q) for q in (0.5, 0.95, 0.99))
    charts = [
        _img(
            _chart(
                "bar",
                list(s.decisions),
                list(s.decisions.values()),
                "Requests by decision",
                "requests",
            ),
            "requests by decision",
        ),
        _img(
            _chart(
                "barh",
                [f"{r} [{d}]" for (r, d), _ in s.routes.most_common(20)],
                [n for _, n in s.routes.most_common(20)],
                "Requests by route and decision",
                "requests",
            ),
            "requests by route",
        ),
        _img(
            _chart(
                "barh",
                [r for r, _ in deny_rules],
                [n for _, n in deny_rules],
                "Denials by policy rule",
                "denials",
                "#cc0000",
            ),
            "denials by rule",
        ),
        _img(
            _chart(
                "barh",
                list(s.pii),
                list(s.pii.values()),
                "Personal data found (entity counts by type)",
                "entities",
                "#75507b",
            ),
            "PII by type",
        ),
        _img(
            _chart(
                "bar",
                list(s.modes),
                list(s.modes.values()),
                "Allowed inference: encrypted vs plaintext",
                "requests",
                "#4e9a06",
            ),
            "HE use",
        ),
        _img(
            _chart(
                "hist",
                ["latency"] if s.latency else [],
                list(s.latency),
                "Latency distribution",
                "milliseconds",
                "#c4a000",
            ),
            "latency",
        ),
        _img(
            _chart(
                "bar",
                sorted(s.days),
                [s.days[d] for d in sorted(s.days)],
                "Requests per day",
                "requests",
            ),
            "requests per day",
        ),
    ]
    route_rows = [
        [
            r,
            *(s.routes.get((r, d), 0) for d in ("allow", "deny", "unauthenticated", "error")),
            f"{_percentile(s.route_latency[r], 0.5):.1f}",
            f"{_percentile(s.route_latency[r], 0.95):.1f}",
        ]
        for r in routes
    ]
    summary = {
        "records": s.records,
        "purged": s.purged,
        "decisions": dict(s.decisions),
        "pii": dict(s.pii),
        "modes": dict(s.modes),
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
    }
    facts = [
        ["tenant", manifest.get("tenant") or "all tenants"],
        [
            "requested range",
            f"{manifest.get('since') or 'start'} .. {manifest.get('until') or 'now'}",
        ],
        ["records", f"{s.records} (+{s.purged} purged under retention)"],
        ["first / last record time", f"{s.first_ts} / {s.last_ts}"],
        ["seq range", f"{manifest.get('first_seq')} .. {manifest.get('last_seq')}"],
        ["manifest SHA-256", manifest_sha256],
        ["first / last record hash", f"{manifest.get('first_hash')} / {manifest.get('last_hash')}"],
        ["signed checkpoints in range", len(manifest.get("checkpoints", []))],
        ["signing key id", manifest.get("key_id")],
        ["export verified", "yes: signature, file hashes and chain checked offline"],
    ]
    page = _PAGE.format(
        tenant=html.escape(str(manifest.get("tenant") or "all tenants")),
        facts=_table(["", ""], facts),
        decisions=_table(["decision", "requests"], s.decisions.most_common()),
        charts="\n".join(charts),
        routes=_table(
            ["route", "allow", "deny", "unauthenticated", "error", "p50 ms", "p95 ms"], route_rows
        ),
        rules=_table(["rule", "denials"], deny_rules),
        deny_who=_table(
            ["subject", "object", "rule", "denials"],
            [[*k, n] for k, n in s.deny_who.most_common(25)],
        ),
        pii=_table(["entity type", "count"], s.pii.most_common()),
        models=_table(
            ["model", "subject", "requests"],
            [[m, who, n] for (m, who), n in s.models.most_common(25)],
        ),
        latency=_table(
            ["p50 ms", "p95 ms", "p99 ms", "max ms"],
            [[f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}", f"{max(s.latency, default=0.0):.1f}"]],
        ),
        sha=manifest_sha256,
    )
    output.write_text(page, encoding="utf-8")
    return summary


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Audit compliance report: {tenant}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
h1{{font-size:1.5em}} h2{{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}}
table{{border-collapse:collapse;margin:.5em 0;font-size:.9em}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top;
word-break:break-all}}
th{{background:#f3f3f3}} td:first-child{{white-space:nowrap;word-break:normal}} img{{max-width:100%;margin:.4em 0}}
.charts{{display:grid;grid-template-columns:1fr 1fr;gap:.5em}}
.note{{font-size:.85em;color:#555}}
</style></head><body>
<h1>Audit compliance report: {tenant}</h1>
{facts}
<h2>Requests by decision</h2>{decisions}
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>Requests by route</h2>{routes}
<h2>Denials by policy rule</h2>{rules}
<h2>Denied requests: who, what, which rule</h2>{deny_who}
<h2>Personal data found (entity type counts; no values are ever recorded)</h2>{pii}
<h2>Who called which model</h2>{models}
<h2>Latency</h2>{latency}
<p class="note">Computed from the signed export whose manifest has SHA-256 <code>{sha}</code>.
Anyone holding that export and the published audit public key can check it with
<code>secure-aiaas audit verify-export</code> and recompute these figures. The signatures prove
that the records are those the service recorded and signed; they do not prove that the
service recorded every event correctly in the first place (see docs/compliance.md).</p>
</body></html>
"""
