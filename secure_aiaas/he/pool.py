"""Process pool for HE evaluation: workers hold loaded contexts and encoded weights.

Everything native (SEAL loading untrusted keys and ciphertexts, evaluation) runs in worker
processes, never on the event loop and never in the server process, so a native crash costs one
pool, which is replaced; the request that was running gets `CiphertextError`, and the other
requests are retried once on the new pool.

Lifecycle (the lifespan)::

    pool = HEPool(store_dir=settings.data_dir / "he-contexts")
    await asyncio.to_thread(pool.start)            # blocks ~1-2 s: spawns one worker per core
    pool.add_model(compile_model(stages, "digits-mlp", calibration=calibration))
    plan_json = pool.plan("digits-mlp").to_json()  # GET /v1/he/models/{name}
    cid = await pool.register_context("digits-mlp", body, owner=principal_id)
    reply = await pool.infer("digits-mlp", body, owner=principal_id)
    pool.delete_context(cid, owner=principal_id)
    await asyncio.to_thread(pool.close)

Scheduling: at most ``workers`` calls run (one per worker process); the others wait in this
pool's own queue, ordered by priority (the calling tenant's, higher first; arrival order
within a priority), so the executor never holds a FIFO backlog. Queued + running calls are
bounded by ``max_pending``: beyond it a call is refused at once (503), it never waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import resource
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from secure_aiaas.crypto.he_wire import (
    InferenceRequest,
    InferenceResponse,
    decode_public_context,
    decode_request,
    encode_response,
)
from secure_aiaas.crypto.sealing import open_sealed, seal
from secure_aiaas.errors import (
    CiphertextError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
)
from secure_aiaas.he.contexts import ContextRecord, ContextStore, MemoryContextStore
from secure_aiaas.he.plan import CompiledModel, HEPlan
from secure_aiaas.he.slots import PrioritySlots

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HELimits:
    """Bounds applied before any parsing (the HTTP layer should cap bodies with them too)."""

    max_context_bytes: int = 16 << 20  # digits-mlp: 11.7 MB of seed-compressed keys
    max_samples_single: int = 64  # single packing: ciphertexts per request
    max_contexts: int = 256
    worker_memory_bytes: int = 3 << 30  # RLIMIT_AS per worker: a bomb fails in the worker
    contexts_per_worker: int = 8
    max_pending: int = 32  # queued + running calls; beyond it callers get 503, not a backlog
    # Per tenant, so one tenant cannot lock the others out of what is global above.
    max_contexts_per_tenant: int = 8
    max_context_bytes_per_tenant: int = 128 << 20
    max_pending_per_tenant: int = 2  # a tenant's next concurrent call gets 429 at once


class TenantLimitError(RateLimitedError):
    """A tenant's own HE limit (contexts, their bytes, concurrent calls): 429."""

    code = "tenant_limit"
    public_message = "tenant limit for encrypted inference reached"


def ciphertext_cap(plan: HEPlan) -> int:
    """Largest legitimate serialized ciphertext for the plan: two uncompressed polynomials."""
    params = plan.ckks
    data_primes = len(params.coeff_mod_bit_sizes) - 1
    return 2 * params.poly_modulus_degree * data_primes * 8 + 4096


def request_cap(plan: HEPlan, limits: HELimits) -> int:
    """Largest legitimate request body for the plan (cap the HTTP body with this)."""
    per_ct = ciphertext_cap(plan) + 64
    count = max(plan.batched.input_ciphertexts, limits.max_samples_single if plan.single else 0)
    return count * per_ct + 1024


# --------------------------------------------------------------------------- worker side
_MODELS: dict[str, Any] = {}
_CONTEXTS: Any = None
_DATA_KEY = b""


def _init_worker(memory_bytes: int, contexts: int, data_key: bytes) -> None:
    global _CONTEXTS, _DATA_KEY
    from secure_aiaas.he.evaluator import LRU

    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    _CONTEXTS = LRU(contexts)
    _DATA_KEY = data_key


def _encoded(fingerprint: str, model_path: str) -> Any:
    """The model's encoded weights, loaded once per worker from the server's own store."""
    from secure_aiaas.he.evaluator import EncodedModel

    model = _MODELS.get(fingerprint)
    if model is None:
        # Written by `HEPool.add_model` into the private store: trusted, unlike request bytes.
        compiled = pickle.loads(Path(model_path).read_bytes())
        model = _MODELS[fingerprint] = EncodedModel.build(compiled)
    return model


def _load_context(plan: HEPlan, path: str, limit: int, context_id: str) -> Any:
    from secure_aiaas.he.evaluator import load_public_context

    # Contexts are sealed at rest (AES-GCM, bound to their id); opened only in the worker.
    data = open_sealed(_DATA_KEY, Path(path).read_bytes(), context_id.encode())
    return load_public_context(decode_public_context(data, max_bytes=limit), plan)


def _task_validate(plan: HEPlan, path: str, limit: int, context_id: str) -> int:
    """Load the uploaded keys once in a worker: SEAL checks them against the plan's context."""
    keys = _load_context(plan, path, limit, context_id)
    return int(keys.nbytes)


def _task_infer(
    plan: HEPlan,
    model_path: str,
    context_id: str,
    path: str,
    limit: int,
    packing: str,
    n_samples: int,
    blobs: tuple[bytes, ...],
) -> list[bytes]:
    from secure_aiaas.he.evaluator import run_request

    keys = _CONTEXTS.fetch(context_id)
    if keys is None:  # first request for this context in this worker: load once, keep
        keys = _load_context(plan, path, limit, context_id)
        _CONTEXTS.put(context_id, keys)
    model = _encoded(plan.fingerprint, model_path)
    return run_request(model, keys, packing, n_samples, blobs, ciphertext_cap(plan))


def _task_warm() -> int:
    import tenseal.sealapi  # noqa: F401 - import cost paid at start, not on the first request

    return os.getpid()


# --------------------------------------------------------------------------- server side
class HEPool:
    """Worker processes plus the registry of models and tenants' public contexts."""

    def __init__(
        self,
        *,
        store_dir: Path,
        workers: int | None = None,
        limits: HELimits | None = None,
        contexts: ContextStore | None = None,
        data_key: bytes | None = None,
        context_ttl_s: float = 24 * 3600,
        priority_of: Callable[[], int] | None = None,
        on_call: Callable[[str, float, float], None] | None = None,
    ) -> None:
        """
        Args:
            store_dir: this process's private working directory (compiled models, and a cache
                of sealed contexts fetched from `contexts`); nothing in it is needed by others.
            contexts: where registered contexts live (shared by replicas); default: in memory.
            data_key: AES-256 key sealing contexts at rest; default: a key for this process.
            context_ttl_s: how long a registered context stays usable.
            priority_of: the calling request's priority (higher runs first).
            on_call: metrics hook, ``(task, wait_s, run_s)`` after every call; must not raise.
        """
        self.limits = limits or HELimits()
        self.workers = workers or max(1, len(os.sched_getaffinity(0)))
        self.store_dir = Path(store_dir)
        self._models: dict[str, CompiledModel] = {}
        self._contexts: ContextStore = contexts if contexts is not None else MemoryContextStore()
        self._data_key = data_key or secrets.token_bytes(32)
        self.context_ttl_s = context_ttl_s
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.replacements = 0  # how many times a crashed pool was replaced (metrics, tests)
        self._pending = 0
        self.rejected = 0  # calls refused by a full queue since start
        self._priority_of = priority_of
        self._on_call = on_call
        self._slots = PrioritySlots(self.workers)
        self._tenant_pending: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle
    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=get_context("spawn"),  # no fork of a threaded server process
            initializer=_init_worker,
            initargs=(
                self.limits.worker_memory_bytes,
                self.limits.contexts_per_worker,
                self._data_key,
            ),
        )

    def start(self, *, warm: bool = True) -> None:
        """Start the pool; ``warm``: its workers now (each imports TenSEAL, ~1.5 s of CPU),
        not at the first call that needs one."""
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock:
            if self._executor is None:
                self._executor = self._new_executor()
            executor = self._executor
        if warm:
            for future in [executor.submit(_task_warm) for _ in range(self.workers)]:
                future.result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ models
    def add_model(self, compiled: CompiledModel) -> None:
        """Publish a compiled model; workers load its weights once, by fingerprint."""
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._model_path(compiled.plan)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(compiled))
        tmp.replace(path)
        self._models[compiled.plan.model] = compiled

    def _model_path(self, plan: HEPlan) -> Path:
        return self.store_dir / f"model-{plan.fingerprint}.pkl"

    def plan(self, model: str) -> HEPlan:
        """The published plan (``GET /v1/he/models/{name}``); `NotFoundError` if absent."""
        compiled = self._models.get(model)
        if compiled is None:
            raise NotFoundError("model has no HE plan")
        return compiled.plan

    def has_plan(self, model: str) -> bool:
        return model in self._models

    def _compiled(self, model: str) -> CompiledModel:
        self.plan(model)
        return self._models[model]

    # ------------------------------------------------------------------ calls
    def _submit(self, fn: Callable[..., Any], *args: Any) -> tuple[Future[Any], Any]:
        with self._lock:
            if self._executor is None:
                raise OverloadedError("HE pool not running")
            executor = self._executor
        return executor.submit(fn, *args), executor

    def _replace(self, broken: Any) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = self._new_executor()
                self.replacements += 1
        broken.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[..., Any], *args: Any, priority: int | None = None) -> Any:
        """Run `fn(*args)` in a worker; a worker crash -> pool replaced, one retry, then 422.

        Waits for a free worker behind higher-priority calls (default priority:
        ``priority_of()``). Raises `OverloadedError` (503) at once when `max_pending` calls
        are already queued or running.
        """
        with self._lock:
            if self._pending >= self.limits.max_pending:
                self.rejected += 1
                raise OverloadedError("HE evaluation queue full")
            self._pending += 1
        if priority is None:
            priority = self._priority_of() if self._priority_of is not None else 0
        queued = time.perf_counter()
        try:
            await self._slots.acquire(priority)
            started = time.perf_counter()
            try:
                result = await self._run(fn, *args)
            finally:
                self._slots.release()
            if self._on_call is not None:
                try:
                    self._on_call(
                        getattr(fn, "__name__", "call").removeprefix("_task_"),
                        started - queued,
                        time.perf_counter() - started,
                    )
                except Exception:  # noqa: BLE001 (a metrics bug must not fail the call)
                    logger.exception("he.on_call_failed")
            return result
        finally:
            with self._lock:
                self._pending -= 1

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        for attempt in (1, 2):
            future, executor = self._submit(fn, *args)
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool as exc:
                # Also breaks innocent requests running alongside: they get one retry on
                # the new pool; input that crashes a worker twice is refused.
                self._replace(executor)
                if attempt == 2:
                    raise CiphertextError("input crashed an evaluation worker") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def stats(self) -> dict[str, Any]:
        """Queue and pool sizes (metrics, the resource view)."""
        with self._lock:
            pending = self._pending
        return {
            "workers": self.workers,
            "running": self._slots.running,
            "waiting": self._slots.waiting,
            "pending": pending,
            "max_pending": self.limits.max_pending,
            "rejected": self.rejected,
            "replacements": self.replacements,
            "models": sorted(self._models),
            "alive": self._executor is not None,
        }

    def call_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`call` for synchronous callers (tests, CLI); never use it on the event loop."""
        return asyncio.run(self.call(fn, *args))

    # ------------------------------------------------------------------ per tenant
    @asynccontextmanager
    async def reserve(self, tenant: str) -> AsyncIterator[None]:
        """One of ``tenant``'s concurrent calls; `TenantLimitError` (429) at once when it
        already has ``max_pending_per_tenant`` — before the caller reads a request body."""
        with self._lock:
            if self._tenant_pending[tenant] >= self.limits.max_pending_per_tenant:
                self.rejected += 1
                raise TenantLimitError(
                    "too many concurrent encrypted requests for this tenant", retry_after=1
                )
            self._tenant_pending[tenant] += 1
        try:
            yield
        finally:
            with self._lock:
                self._tenant_pending[tenant] -= 1
                if not self._tenant_pending[tenant]:
                    del self._tenant_pending[tenant]

    def upload_allowance(self, tenant: str, declared: int | None) -> int:
        """Bytes ``tenant`` may still upload as one context; raises `TenantLimitError` when
        its contexts (count or bytes) are at their limit or ``declared`` would exceed it."""
        self._purge_expired()
        count, used = self._contexts.usage(f"{tenant}/")
        limits = self.limits
        if count >= limits.max_contexts_per_tenant:
            raise TenantLimitError("tenant context limit reached; delete a context first")
        allowance = min(limits.max_context_bytes, limits.max_context_bytes_per_tenant - used)
        if allowance <= 0 or (declared is not None and declared > allowance):
            if declared is not None and declared > limits.max_context_bytes:
                raise PayloadTooLargeError("context too large")
            raise TenantLimitError("tenant context storage limit reached; delete a context first")
        return allowance

    # ------------------------------------------------------------------ contexts
    def _cache_path(self, context_id: str) -> Path:
        return self.store_dir / f"ctx-{context_id}.sealed"

    def _write_cache(self, context_id: str, sealed: bytes) -> Path:
        path = self._cache_path(context_id)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(sealed)
        tmp.replace(path)
        return path

    def _purge_expired(self) -> None:
        for context_id in self._contexts.purge_expired():
            self._cache_path(context_id).unlink(missing_ok=True)

    async def register_context(self, model: str, data: bytes, *, owner: str) -> str:
        """Validate a public context for `model` and store it (sealed); returns its id.

        Raises `PayloadTooLargeError` (413) over `max_context_bytes`, `CiphertextError` (422)
        for a secret key, other parameters than the plan, missing/extra Galois keys or bytes
        SEAL rejects, `NotFoundError` (404) for an unknown model.
        """
        compiled = self._compiled(model)
        limit = self.limits.max_context_bytes
        if len(data) > limit:
            raise PayloadTooLargeError("context too large")
        decode_public_context(data, max_bytes=limit)  # pure-Python checks before SEAL sees it
        await asyncio.to_thread(self._purge_expired)
        if await asyncio.to_thread(self._contexts.count) >= self.limits.max_contexts:
            raise OverloadedError("too many registered contexts")
        context_id = secrets.token_urlsafe(16)
        sealed = seal(self._data_key, data, context_id.encode())
        path = self._write_cache(context_id, sealed)
        try:
            await self.call(_task_validate, compiled.plan, str(path), limit, context_id)
            # Re-checked after validation: concurrent uploads of one tenant cannot overshoot.
            tenant = owner.split("/", 1)[0]
            count, used = await asyncio.to_thread(self._contexts.usage, f"{tenant}/")
            if (
                count >= self.limits.max_contexts_per_tenant
                or used + len(data) > self.limits.max_context_bytes_per_tenant
            ):
                raise TenantLimitError("tenant context limit reached; delete a context first")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        # nbytes: what the tenant uploaded (what its storage limit counts).
        record = ContextRecord(
            context_id,
            model,
            compiled.plan.fingerprint,
            owner,
            len(data),
            time.time() + self.context_ttl_s,
        )
        await asyncio.to_thread(self._contexts.put, record, sealed)
        return context_id

    def owned_context(self, context_id: str, owner: str) -> ContextRecord:
        """The caller's context; `NotFoundError` for an unknown id *and* for another
        owner's (existence is not disclosed)."""
        record = self._contexts.get(context_id)
        if record is None or record.owner != owner:
            raise NotFoundError("unknown context")
        return record

    def delete_context(self, context_id: str, *, owner: str) -> None:
        self.owned_context(context_id, owner)
        self.delete_owned(context_id)

    def delete_owned(self, context_id: str) -> None:
        """Delete a context whose owner was already checked (`owned_context`)."""
        self._contexts.delete(context_id)
        self._cache_path(context_id).unlink(missing_ok=True)

    def _local_copy(self, record: ContextRecord) -> Path:
        """The sealed context on this replica's disk, fetched from the shared store once."""
        path = self._cache_path(record.context_id)
        if not path.exists():
            sealed = self._contexts.sealed_blob(record.context_id)
            if sealed is None:
                raise NotFoundError("unknown context")
            path = self._write_cache(record.context_id, sealed)
        return path

    # ------------------------------------------------------------------ inference
    async def infer(self, model: str, body: bytes, *, owner: str) -> bytes:
        """Evaluate one request frame (see `crypto.he_wire`); returns the response frame."""
        request = self.decode(model, body)
        record = await asyncio.to_thread(self.context_for, model, request.context_id, owner)
        return await self.evaluate(model, request, record)

    def decode(self, model: str, body: bytes) -> InferenceRequest:
        """The request frame, size-checked against the model's plan (the only decode)."""
        plan = self._compiled(model).plan
        return decode_request(
            body,
            max_body=request_cap(plan, self.limits),
            max_ciphertexts=max(plan.batched.input_ciphertexts, self.limits.max_samples_single),
            max_ciphertext_bytes=ciphertext_cap(plan),
        )

    def context_for(self, model: str, context_id: str, owner: str) -> ContextRecord:
        """The owner's context registered for ``model``'s current plan."""
        record = self.owned_context(context_id, owner)
        plan = self._compiled(model).plan
        if record.model != model or record.fingerprint != plan.fingerprint:
            raise CiphertextError("context was registered for another model or plan version")
        return record

    async def evaluate(self, model: str, request: InferenceRequest, record: ContextRecord) -> bytes:
        """Evaluate a decoded frame under its (already checked) context."""
        compiled = self._compiled(model)
        path = await asyncio.to_thread(self._local_copy, record)
        blobs = await self.call(
            _task_infer,
            compiled.plan,
            str(self._model_path(compiled.plan)),
            record.context_id,
            str(path),
            self.limits.max_context_bytes,
            request.packing,
            request.n_samples,
            request.ciphertexts,
        )
        return encode_response(InferenceResponse(request.packing, request.n_samples, tuple(blobs)))
