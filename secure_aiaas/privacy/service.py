"""The scrubber as the service runs it: detection in worker processes, batched across requests.

Why processes: Python's ``re`` (and spaCy's and Presidio's Python code) hold the GIL while they
work, so a thread does not keep the event loop free; a worker process does. Each worker loads
spaCy and the PII model once (ONNX Runtime session, one intra-op thread) and returns spans only.
The parent keeps the profiles (hot reload), numbers placeholders and transforms, so
``<PERSON_1>`` is consistent across all texts of a request.

Batching: requests enqueue their texts; a dispatcher hands a worker everything queued (up to
``max_batch_texts``) as soon as one is free, so concurrent requests share one model pass. A
request's texts always travel together. Worker count defaults to the CPU count.

Failure: if a worker dies, every request in flight on it gets ``PrivacyError`` (503) and the
pool is started again for later requests. Nothing is ever passed on unscrubbed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secure_aiaas.errors import InputError, PrivacyError
from secure_aiaas.privacy import structured
from secure_aiaas.privacy.limits import (
    JsonTooLargeError,
    RequestTooLargeError,
    ScrubLimits,
    TextTooLongError,
)
from secure_aiaas.privacy.operators import RequestOperators, TenantKeys
from secure_aiaas.privacy.profiles import PrivacyPolicy, Profile, ProfileStore
from secure_aiaas.privacy.results import ConversationResult, JsonScrubResult, ScrubResult
from secure_aiaas.privacy.span_rules import Span
from secure_aiaas.privacy.transformation import transform

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    profile: Profile
    texts: list[str]
    hints: list[str | None]
    future: asyncio.Future[list[list[Span]]] = field(repr=False)


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to load its detector (picklable)."""

    model_name: str
    pii_model: str | None
    pii_graph: bytes | None
    batch_size: int


class ScrubberService:
    """Async scrubbing over a pool of detection processes. Build with ``await start(...)``."""

    def __init__(
        self,
        *,
        profiles: ProfileStore | PrivacyPolicy,
        config: WorkerConfig,
        processes: int,
        limits: ScrubLimits,
        max_batch_texts: int,
        anonymizer: Any,
    ) -> None:
        self._store = profiles if isinstance(profiles, ProfileStore) else None
        self._policy = profiles.policy if isinstance(profiles, ProfileStore) else profiles
        self._config = config
        self.processes = processes
        self.limits = limits
        self.max_batch_texts = max_batch_texts
        self._anonymizer = anonymizer  # a presidio_anonymizer.AnonymizerEngine
        self._executor: ProcessPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._slots = asyncio.Semaphore(processes)
        self._dispatcher: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._restarting: asyncio.Task[None] | None = None
        self._closed = False
        self.worker_pids: tuple[int, ...] = ()

    @classmethod
    async def start(
        cls,
        profiles: ProfileStore | PrivacyPolicy,
        *,
        model_name: str | None = None,
        processes: int | None = None,
        batch_size: int = 128,
        limits: ScrubLimits | None = None,
        pii_model: str | None = "int8",
        max_batch_texts: int = 256,
        graph_cache_dir: Path | None = None,
    ) -> ScrubberService:
        """Start the worker processes and wait until each has loaded its models.

        ``graph_cache_dir`` keeps the converted PII graph across starts (None: converted
        at every start).

        Raises:
            PrivacyError: a model cannot be loaded (the service must refuse plaintext).
        """
        from secure_aiaas.privacy.scrubber import DEFAULT_MODEL

        graph = None
        if pii_model is not None:
            try:
                graph = await _pii_graph(pii_model, graph_cache_dir)
            except Exception as exc:
                raise PrivacyError() from exc
        config = WorkerConfig(model_name or DEFAULT_MODEL, pii_model, graph, batch_size)
        count = max(1, processes or os.cpu_count() or 1)
        # Presidio's import (it pulls in its NLP engines: seconds) runs in a thread while the
        # workers start in their processes, not on the event loop before them.
        importing = asyncio.ensure_future(asyncio.to_thread(_new_anonymizer))
        try:
            executor, pids = await _start_workers(config, count)
        except BaseException:
            importing.cancel()
            raise
        try:
            anonymizer = await importing
        except Exception as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            raise PrivacyError() from exc
        service = cls(
            profiles=profiles,
            config=config,
            processes=count,
            limits=limits or ScrubLimits(),
            max_batch_texts=max_batch_texts,
            anonymizer=anonymizer,
        )
        service._executor, service.worker_pids = executor, pids
        return service

    # --- public API (mirrors Scrubber) ---------------------------------------------------------

    def profile_for(self, tenant: str, model: str | None = None) -> Profile:
        """The profile that applies to a tenant and model (reloads the file if it changed)."""
        if self._store is not None:
            self._store.maybe_reload()
            return self._store.policy.select(tenant, model)
        return self._policy.select(tenant, model)

    def reload_profiles(self) -> list[str]:
        """Re-read the profile file now; returns its errors (the last good version stays)."""
        return self._store.reload() if self._store else []

    @property
    def ready(self) -> bool:
        """True while the pool can take work (for the readiness probe)."""
        return not self._closed and self._executor is not None

    async def scrub_texts(
        self,
        texts: Sequence[str],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> list[ScrubResult]:
        """Scrub the texts of one request (placeholders consistent across them)."""
        result = await self.scrub_conversation(texts, tenant=tenant, model=model, keys=keys)
        return list(result.results)

    async def scrub_text(
        self, text: str, *, tenant: str, model: str | None = None, keys: TenantKeys | None = None
    ) -> ScrubResult:
        """Scrub one text."""
        return (await self.scrub_texts([text], tenant=tenant, model=model, keys=keys))[0]

    async def scrub_conversation(
        self,
        texts: Sequence[str],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> ConversationResult:
        """Scrub a conversation as one request; ``placeholders`` maps placeholder → value."""
        texts = list(texts)
        self.limits.check_texts(texts)
        profile, ops = self._prepare(tenant, model, keys)
        spans = await self._detect(profile, texts, [None] * len(texts))
        results = await self._transform(texts, spans, profile, ops)
        return ConversationResult(tuple(results), ops.placeholders())

    async def scrub_json(
        self, obj: Any, *, tenant: str, model: str | None = None, keys: TenantKeys | None = None
    ) -> JsonScrubResult:
        """Scrub every string, number and key of a JSON value."""
        return (await self.scrub_json_batch([obj], tenant=tenant, model=model, keys=keys))[0]

    async def scrub_json_batch(
        self,
        objs: Sequence[Any],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> list[JsonScrubResult]:
        """Scrub several JSON values of one request in one detection pass."""
        per_obj = [structured.collect(obj, self.limits) for obj in objs]
        flat = [leaf for leaves in per_obj for leaf in leaves]
        _check_leaves(flat, self.limits)
        profile, ops = self._prepare(tenant, model, keys)
        texts = [leaf.text for leaf in flat]
        spans = await self._detect(profile, texts, [leaf.hint for leaf in flat])
        results = await self._transform(texts, spans, profile, ops)
        out: list[JsonScrubResult] = []
        i = 0
        for obj, leaves in zip(objs, per_obj):
            mine = results[i : i + len(leaves)]
            i += len(leaves)
            counts: Counter[str] = Counter()
            for r in mine:
                counts.update(r.entity_counts())
            value = structured.rebuild(obj, leaves, [(r.text, bool(r.entities)) for r in mine])
            out.append(JsonScrubResult(value, dict(counts)))
        return out

    async def detect(
        self, texts: Sequence[str], *, tenant: str, model: str | None = None
    ) -> list[list[Span]]:
        """Detection only: spans per text on the original texts."""
        texts = list(texts)
        self.limits.check_texts(texts)
        return await self._detect(self.profile_for(tenant, model), texts, [None] * len(texts))

    async def close(self) -> None:
        """Stop the workers; later calls raise ``PrivacyError``."""
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        if self._restarting is not None:
            self._restarting.cancel()
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(PrivacyError())
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)

    # --- internals ------------------------------------------------------------------------------

    def _prepare(
        self, tenant: str, model: str | None, keys: TenantKeys | None
    ) -> tuple[Profile, RequestOperators]:
        if self._closed:
            raise PrivacyError()
        try:
            return self.profile_for(tenant, model), RequestOperators(tenant, keys)
        except Exception as exc:
            raise PrivacyError() from exc

    async def _transform(
        self, texts: list[str], spans: list[list[Span]], profile: Profile, ops: RequestOperators
    ) -> list[ScrubResult]:
        def run() -> list[ScrubResult]:
            return [transform(self._anonymizer, t, s, profile, ops) for t, s in zip(texts, spans)]

        try:
            return await asyncio.to_thread(run)
        except (PrivacyError, InputError):
            raise
        except Exception as exc:  # never leak input text through an exception message
            raise PrivacyError() from exc

    async def _detect(
        self, profile: Profile, texts: list[str], hints: list[str | None]
    ) -> list[list[Span]]:
        if self._closed:
            raise PrivacyError()
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[list[Span]]] = loop.create_future()
        await self._queue.put(_Job(profile, texts, hints, future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch())
        return await future

    async def _dispatch(self) -> None:
        while True:
            job = await self._queue.get()
            await self._slots.acquire()
            jobs, count = [job], len(job.texts)
            # Everything that queued while the workers were busy joins this batch.
            while not self._queue.empty() and count < self.max_batch_texts:
                nxt = self._queue.get_nowait()
                jobs.append(nxt)
                count += len(nxt.texts)
            task = asyncio.get_running_loop().create_task(self._run_batch(jobs))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run_batch(self, jobs: list[_Job]) -> None:
        try:
            groups: dict[int, tuple[Profile, list[str], list[str | None]]] = {}
            for job in jobs:
                group = groups.setdefault(id(job.profile), (job.profile, [], []))
                group[1].extend(job.texts)
                group[2].extend(job.hints)
            executor = self._executor
            if executor is None:
                raise PrivacyError()
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(
                    executor, _worker_detect, list(groups.values())
                )
            except BrokenProcessPool:
                self._replace_pool(executor)
                raise PrivacyError() from None
            by_profile = dict(zip(groups, results))
            offsets: dict[int, int] = Counter()
            for job in jobs:
                key = id(job.profile)
                start = offsets[key]
                offsets[key] = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result(by_profile[key][start : start + len(job.texts)])
        except BaseException as exc:
            error = exc if isinstance(exc, PrivacyError) else PrivacyError()
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._slots.release()

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        """A pool broke (a worker, or its forkserver, died): refuse requests (503) until one
        replacement answers. Every batch in flight sees the break; the first starts the one
        replacement."""
        if self._executor is broken:
            self._executor = None
            broken.shutdown(wait=False, cancel_futures=True)
        if self._closed or self._executor is not None:
            return
        if self._restarting is None or self._restarting.done():
            logger.error("privacy.workers_lost")
            self._restarting = asyncio.get_running_loop().create_task(self._restart_pool())

    async def _restart_pool(self) -> None:
        # Until a pool starts: a first attempt can meet the killed forkserver before its
        # death is seen, and a start that fails once must not leave the service refusing
        # every request for good.
        delay_s = 0.5
        while not self._closed:
            try:
                executor, pids = await _start_workers(self._config, self.processes)
            except PrivacyError:
                logger.warning("privacy.workers_restart_failed")
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 10.0)
                continue
            if self._closed:
                executor.shutdown(wait=False, cancel_futures=True)
                return
            self._executor, self.worker_pids = executor, pids
            logger.warning("privacy.workers_replaced")
            return


def _check_leaves(leaves: list[structured.Leaf], limits: ScrubLimits) -> None:
    if len(leaves) > limits.max_json_leaves:
        raise JsonTooLargeError("max_json_leaves", limits.max_json_leaves)
    total = 0
    for leaf in leaves:
        if len(leaf.text) > limits.max_text_chars:
            raise TextTooLongError("max_text_chars", limits.max_text_chars)
        total += len(leaf.text)
    if total > limits.max_request_chars:
        raise RequestTooLargeError("max_request_chars", limits.max_request_chars)


async def _in_child_process(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in a short-lived process: the int8 conversion's peak memory (onnx, the float
    graph) is returned to the system instead of staying in the server's heap."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


async def _start_workers(
    config: WorkerConfig, processes: int
) -> tuple[ProcessPoolExecutor, tuple[int, ...]]:
    """A pool of ``processes`` detection workers, each answering (its models loaded)."""
    executor = ProcessPoolExecutor(
        processes,
        mp_context=_worker_context(),
        initializer=_worker_init,
        initargs=(config,),
    )
    loop = asyncio.get_running_loop()
    pids: set[int] = set()
    try:
        # Until every worker has answered (each has loaded its models): a ping that lands on
        # a busy or loading worker waits; no request is taken before the pool is complete.
        for _ in range(20):
            answers = await asyncio.gather(
                *(loop.run_in_executor(executor, _worker_ping, 0.2) for _ in range(processes))
            )
            pids.update(answers)
            if len(pids) >= processes:
                break
    except BaseException as exc:  # cancelled too (a closing service): no pool left behind
        executor.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, Exception):
            raise PrivacyError() from exc
        raise
    return executor, tuple(sorted(pids))


# presidio_anonymizer's Azure surrogate operator imports this presidio_analyzer module for
# an Azure credential; importing it loads presidio_analyzer, spaCy and transformers' pipelines
# into the service's process (~5 s of CPU at each start). Remote services are never called
# here, and every importer of the helper treats it as optional (ImportError).
_AZURE_CREDENTIAL_HELPER = "presidio_analyzer.llm_utils.azure_auth_helper"


def _new_anonymizer() -> Any:
    import sys

    sys.modules.setdefault(_AZURE_CREDENTIAL_HELPER, None)  # type: ignore[arg-type]
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()  # type: ignore[no-untyped-call]


async def _pii_graph(precision: str, cache_dir: Path | None) -> bytes:
    """The PII model's graph: from the cache when it holds a verified copy, else converted
    (in a child process) and cached for the next start."""
    from secure_aiaas.privacy import pii_model

    if cache_dir is not None:
        cached = await asyncio.to_thread(pii_model.cached_graph, precision, cache_dir)
        if cached is not None:
            return cached
    graph: bytes = await _in_child_process(pii_model.graph_for, precision)
    if cache_dir is not None:
        try:
            await asyncio.to_thread(pii_model.store_graph, precision, graph, cache_dir)
        except OSError:
            logger.warning("privacy.graph_cache_unwritable")  # converted again next start
    return graph


# --- worker process side -----------------------------------------------------------------------

_DETECTOR: Any = None


_WORKER_PRELOAD = "secure_aiaas.privacy.worker_preload"


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a forkserver: a fresh, single-threaded process (never the threaded
    server) that has imported `worker_preload` once, so a worker only loads its models."""
    context = multiprocessing.get_context("forkserver")
    # Takes effect when this process starts its forkserver (the first pool does).
    context.set_forkserver_preload([_WORKER_PRELOAD])
    return context


def _worker_init(config: WorkerConfig) -> None:
    """Load the detector once per worker process."""
    global _DETECTOR
    import importlib

    importlib.import_module(_WORKER_PRELOAD)  # already there when the forkserver preloaded it
    from secure_aiaas.privacy.detection import Detector

    _DETECTOR = Detector.load(
        config.model_name,
        pii_model=config.pii_model,
        pii_graph=config.pii_graph,
        batch_size=config.batch_size,
    )


def _worker_ping(delay: float) -> int:
    import time

    time.sleep(delay)  # long enough that each ping lands on its own worker
    if _DETECTOR is None:
        raise PrivacyError()
    return os.getpid()


def _worker_detect(
    groups: list[tuple[Profile, list[str], list[str | None]]],
) -> list[list[list[Span]]]:
    if _DETECTOR is None:
        raise PrivacyError()
    return [_DETECTOR.detect(texts, hints, profile) for profile, texts, hints in groups]
