"""Prometheus metrics on an injectable `CollectorRegistry` (tests build their own).

Labels never carry user input. Every label value is either fixed by the code (decision,
queue, limit), a route *template* matched by the router (never the raw path), an HTTP method
from a closed set, a status code, or an identifier chosen by an operator: a model name from
the registry, a PII entity type from the configured recognizers (checked against a pattern),
a tenant name from the tenant registry (only ever taken from an authenticated principal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_ENTITY = re.compile(r"^[A-Z][A-Z0-9_]{0,47}$")
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_AUDIT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_HE = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def method_label(method: str) -> str:
    """The HTTP method, or ``other``: a client may send any token as a method."""
    return method if method in METHODS else "other"


def entity_label(entity: str) -> str:
    """A PII entity type (recognizer names are upper-case identifiers), else ``OTHER``."""
    return entity if _ENTITY.match(entity) else "OTHER"


class Metrics:
    """Every collector the service exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._request_children: dict[
            tuple[str, str, str, int, str | None], tuple[Any, Any, Any]
        ] = {}
        r = self.registry
        self.requests = Counter(
            "saiaas_requests_total",
            "HTTP requests answered (health probes excluded)",
            ["route", "method", "decision", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "saiaas_request_duration_seconds",
            "Time to the response start, audit included",
            ["route", "method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tenant_requests = Counter(
            "saiaas_tenant_requests_total",
            "Authenticated requests by tenant and decision",
            ["tenant", "decision"],
            registry=r,
        )
        self.quota_refusals = Counter(
            "saiaas_quota_refusals_total",
            "Requests refused by a quota (429)",
            ["tenant", "limit"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "saiaas_queue_depth",
            "Requests waiting for compute, sampled at scrape time",
            ["queue", "model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_capacity = Gauge(
            "saiaas_queue_capacity",
            "Bound of each compute queue (full: 503 at once)",
            ["queue", "model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_wait = Histogram(
            "saiaas_queue_wait_seconds",
            "Time waited in a compute queue (plaintext: the longest wait in each batch)",
            ["queue"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_rejections = Gauge(
            "saiaas_queue_rejected",
            "Requests refused by a full queue since start",
            ["queue", "model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_rows = Histogram(
            "saiaas_batch_rows",
            "Rows per executed forward pass",
            ["model"],
            buckets=_BATCH,
            registry=r,
        )
        self.forward = Histogram(
            "saiaas_forward_seconds",
            "Forward pass time per batch",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.he_eval = Histogram(
            "saiaas_he_evaluation_seconds",
            "Homomorphic evaluation time in a worker",
            ["task"],
            buckets=_HE,
            registry=r,
        )
        self.he_workers = Gauge(
            "saiaas_he_workers",
            "HE evaluation worker processes",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.audit_append = Histogram(
            "saiaas_audit_append_seconds",
            "Time for a request's audit record to be "
            "durably committed (group commit wait included)",
            buckets=_AUDIT,
            registry=r,
        )
        self.audit_commit = Gauge(
            "saiaas_audit_last_commit_seconds",
            "Duration of the last group commit",
            registry=r,
            # Several workers: the slowest one's (a sum of durations would mean nothing).
            multiprocess_mode="livemax",
        )
        self.pii = Counter(
            "saiaas_pii_entities_total",
            "Personal-data entities found, by type",
            ["entity"],
            registry=r,
        )

        self.llm_ttft = Histogram(
            "saiaas_llm_time_to_first_token_seconds",
            "Submit to first generated token",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.llm_itl = Histogram(
            "saiaas_llm_inter_token_seconds",
            "Between consecutive generated tokens",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.llm_tokens = Counter(
            "saiaas_llm_tokens_total",
            "Tokens processed (rate: tokens/s)",
            ["model", "kind"],
            registry=r,
        )
        self.llm_batch = Histogram(
            "saiaas_llm_batch_size",
            "Sequences decoded together per engine step",
            ["model"],
            buckets=_BATCH,
            registry=r,
        )
        self.llm_queue = Gauge(
            "saiaas_llm_queue_depth",
            "Generations waiting to join the batch",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.llm_requests = Counter(
            "saiaas_llm_requests_total",
            "Generations by how they ended",
            ["model", "finish_reason"],
            registry=r,
        )

    def llm_observer(self, model: str) -> LLMObserver:
        """The engine's metrics hooks for one chat model (an `llm.EngineObserver`)."""
        return LLMObserver(self, model)

    # ------------------------------------------------------------------ request path
    def observe_request(
        self,
        *,
        route: str,
        method: str,
        decision: str,
        status: int,
        seconds: float,
        tenant: str | None,
        details: Mapping[str, Any],
    ) -> None:
        """One answered request (called by the audit middleware once it is recorded)."""
        method = method_label(method)
        children = self._request_children.get((route, method, decision, status, tenant))
        if children is None:
            children = self._request_children_for(route, method, decision, status, tenant)
        count, latency, per_tenant = children
        count.inc()
        latency.observe(seconds)
        if per_tenant is not None:
            per_tenant.inc()
        if tenant is not None:
            limit = details.get("quota")
            if isinstance(limit, str):
                self.quota_refusals.labels(tenant, limit).inc()
        pii = details.get("pii")
        if isinstance(pii, Mapping):
            for entity, count in pii.items():
                if isinstance(count, int) and count > 0:
                    self.pii.labels(entity_label(str(entity))).inc(count)

    def _request_children_for(
        self, route: str, method: str, decision: str, status: int, tenant: str | None
    ) -> tuple[Any, Any, Any]:
        # `labels()` takes a lock and checks its labels on every call: on the request path the
        # children are looked up once per label set (the set is bounded: routes, methods,
        # decisions, statuses, tenants; the collectors keep every child anyway).
        children = (
            self.requests.labels(route, method, decision, str(status)),
            self.latency.labels(route, method),
            None if tenant is None else self.tenant_requests.labels(tenant, decision),
        )
        self._request_children[(route, method, decision, status, tenant)] = children
        return children

    def observe_batch(self, record: Any) -> None:
        """`ModelPool(on_batch=…)` hook: one executed batch (`BatchRecord`)."""
        self.batch_rows.labels(record.model).observe(record.rows)
        self.forward.labels(record.model).observe(record.forward_s)
        self.queue_wait.labels("plaintext").observe(record.max_wait_s)

    def observe_he(self, task: str, wait_s: float, run_s: float) -> None:
        """`HEPool(on_call=…)` hook: one call waited ``wait_s`` and ran ``run_s``."""
        self.queue_wait.labels("he").observe(wait_s)
        self.he_eval.labels(task).observe(run_s)

    # ------------------------------------------------------------------ scrape time
    def sample(
        self,
        *,
        batchers: list[Any],
        he: Mapping[str, Any] | None,
        audit_last_commit_ms: float | None,
    ) -> None:
        """Refresh the gauges from live state (queues, pools) just before a scrape."""
        for stats in batchers:
            self.queue_depth.labels("plaintext", stats.model).set(stats.queue_depth)
            self.queue_capacity.labels("plaintext", stats.model).set(stats.max_queue_size)
            self.queue_rejections.labels("plaintext", stats.model).set(stats.rejected_total)
        if he is not None:
            self.queue_depth.labels("he", "").set(he["waiting"])
            self.queue_capacity.labels("he", "").set(he["max_pending"])
            self.queue_rejections.labels("he", "").set(he["rejected"])
            self.he_workers.set(he["workers"])
        if audit_last_commit_ms is not None:
            self.audit_commit.set(audit_last_commit_ms / 1000)

    def render(self) -> bytes:
        """The exposition text; with several worker processes (Prometheus multiprocess mode,
        ``PROMETHEUS_MULTIPROC_DIR``), every worker's samples merged."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            forget_dead_workers(directory)
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)

    @staticmethod
    def process_exited() -> None:
        """Drop this process's live gauges from the merged view (multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of worker processes that are gone (multiprocess mode).

    A worker that exits drops its own (`Metrics.process_exited`); one killed (``kill -9``,
    the OOM killer) cannot, and uvicorn starts a replacement beside its files: without this,
    every live gauge would go on counting the dead worker (queue capacity, HE workers).
    Its counters and histograms stay, as Prometheus counters must.
    """
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid_text = path.stem.rpartition("_")[2]
        if pid_text.isdigit() and not _running(int(pid_text)):
            # Another worker's scrape may be removing the same files at the same moment.
            with suppress(FileNotFoundError):
                multiprocess.mark_process_dead(int(pid_text), directory)  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds that pid now: not ours to judge
    return True


class LLMObserver:
    """Engine hooks → collectors (called from the engine thread: quick, never raising)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._m = metrics
        self._model = model

    def on_step(self, record: Any) -> None:
        self._m.llm_batch.labels(self._model).observe(record.batch_size)
        self._m.llm_queue.labels(self._model).set(record.queue_depth)
        self._m.llm_tokens.labels(self._model, "prompt").inc(record.prefill_tokens)
        self._m.llm_tokens.labels(self._model, "completion").inc(record.new_tokens)

    def on_first_token(self, seconds: float) -> None:
        self._m.llm_ttft.labels(self._model).observe(seconds)

    def on_token_gap(self, seconds: float) -> None:
        self._m.llm_itl.labels(self._model).observe(seconds)

    def on_finish(self, event: Any) -> None:
        self._m.llm_requests.labels(self._model, str(event.finish_reason)).inc()
